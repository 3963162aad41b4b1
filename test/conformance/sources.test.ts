/** Every source type runs the source conformance suite against its simulator over HTTP. */
import { finderHarness } from './finder-source-harness.ts';
import { sourceConformance } from './source-suite.ts';
import { yunhuHarness } from './yunhu-source-harness.ts';

sourceConformance('gewe', finderHarness('gewe'));
sourceConformance('videosapi', finderHarness('videosapi'));
sourceConformance('syncfinder', finderHarness('syncfinder'));
sourceConformance('yunhu', yunhuHarness());
