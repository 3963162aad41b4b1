import { describe, expect, it } from 'vitest';

import { isRetriable, PoisonError, TransientError } from '../../../src/core/errors.ts';

describe('errors', () => {
  it('retries transient errors and never programmer errors or poison', () => {
    expect(isRetriable(new TransientError('MSGPIPE_ERR_HTTP_TRANSIENT', 'x'))).toBe(true);
    expect(isRetriable(new TypeError('x'))).toBe(false);
    expect(isRetriable(new PoisonError('MSGPIPE_ERR_JSON', 'x'))).toBe(false);
  });
});
