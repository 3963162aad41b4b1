import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { CursorStore } from '../../../src/sink/cursors.ts';
import { openTempStore, type TempStore } from './helpers.ts';

describe('CursorStore', () => {
  let temp: TempStore;
  beforeEach(async () => {
    temp = await openTempStore();
  });
  afterEach(async () => {
    await temp.dispose();
  });

  it('returns undefined before any save, then the latest cursor per source and stream', async () => {
    const cursors = new CursorStore(temp.store);
    expect(await cursors.load('shop-a', 'main')).toBeUndefined();
    await cursors.save([
      { source: 'shop-a', stream: 'main', cursor: 'kb-1' },
      { source: 'shop-a', stream: 'chat-9', cursor: '17' },
      { source: 'shop-a', stream: 'main', cursor: 'kb-2' },
      { source: 'shop-b', stream: 'main', cursor: 'other' },
    ]);
    await cursors.save([{ source: 'shop-a', stream: 'main', cursor: 'kb-3' }]);
    expect(await cursors.load('shop-a', 'main')).toBe('kb-3');
    expect(await cursors.loadAll('shop-a')).toEqual(new Map([['chat-9', '17'], ['main', 'kb-3']]));
    expect(await cursors.loadAll('shop-b')).toEqual(new Map([['main', 'other']]));
  });

  it('keeps cursors exactly, empty string included (the first keyBuff)', async () => {
    const cursors = new CursorStore(temp.store);
    const keyBuff = 'CAESBAgBEAEaEggDEg4IARIKCOSDp+oGEOSDp+oGIgQIABAA\n"\\/+=';
    await cursors.save([{ source: 's', stream: 'a', cursor: keyBuff }]);
    await cursors.save([{ source: 's', stream: 'b', cursor: '' }]);
    expect(await cursors.load('s', 'a')).toBe(keyBuff);
    expect(await cursors.load('s', 'b')).toBe('');
  });

  it('orders saves in the same millisecond, and never lets an old clock win after a restart', async () => {
    let now = Date.UTC(2030, 0, 1);
    const first = new CursorStore(temp.store, () => now);
    for (let i = 1; i <= 5; i++) await first.save([{ source: 's', stream: 'm', cursor: `c${i}` }]);
    expect(await first.load('s', 'm')).toBe('c5');
    // A new process whose clock is an hour behind.
    now -= 3_600_000;
    const second = new CursorStore(temp.store, () => now);
    await second.save([{ source: 's', stream: 'm', cursor: 'c6' }]);
    expect(await second.load('s', 'm')).toBe('c6');
    expect(await new CursorStore(temp.store).load('s', 'm')).toBe('c6');
  });
});
