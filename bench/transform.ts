/**
 * Transform throughput: `transformFinderItem` messages/s on one core, beside the ceiling of
 * `JSON.parse` over the same item bytes (decoded, then parsed) measured in the same run.
 *
 * The mix is a realistic private-letter inbox: 70 % text, 15 % image, 10 % appmsg/sysmsg
 * (Channels feed shares, links, quotes, revokes, functionmsg), 5 % other (voice, video,
 * sticker, location, card, file). Target: ≥ 100 000 messages/s.
 *
 *   node --import tsx bench/transform.ts            (prints a table and a JSON line)
 *   npm run bench -- transform                      (through bench/run.ts)
 */
import { pathToFileURL } from 'node:url';

import type { Origin } from '../src/core/types.ts';
import { transformFinderItem } from '../src/transform/finder.ts';

/** Options of {@link runTransformBench}. */
export interface TransformBenchOptions {
  /** Distinct items generated (default 20 000). */
  readonly items?: number;
  /** Measuring time per contender, after warm-up (default 4 000 ms), split into rounds. */
  readonly durationMs?: number;
  /** Alternating rounds (default 8): a shared machine's load then hits both contenders alike. */
  readonly rounds?: number;
}

/** What {@link runTransformBench} measured. */
export interface TransformBenchResult {
  readonly items: number;
  readonly avgItemBytes: number;
  /** Share of each kind in the generated mix. */
  readonly mix: Readonly<Record<string, number>>;
  /** transformFinderItem, items per second: median of the rounds. */
  readonly transformPerSec: number;
  /** The best round of transformFinderItem. */
  readonly transformBestPerSec: number;
  /** TextDecoder + JSON.parse of the same bytes, items per second: median of the rounds. */
  readonly jsonParsePerSec: number;
  readonly jsonParseBestPerSec: number;
  /** Median over rounds of transform / JSON.parse measured back to back. */
  readonly ratio: number;
  /** Rows made per run over all items: a check that the work was real. */
  readonly messages: number;
  readonly events: number;
  readonly deadLetters: number;
  readonly targetPerSec: number;
  readonly meetsTarget: boolean;
}

const ME = 'v2_060000231003b20faec8c6e18b1dc1d7cb02e633b077c5f02a8e0b4d6f1a39c72e5b8d40@finder';
const TEXTS = ['请问这款还有现货吗？😂', '好的，谢谢', '什么时候发货？', '在吗', '这个颜色有L码吗', 'ok 👍', '已下单，麻烦尽快发货，地址没有变。'];

/** A deterministic PRNG so every run measures the same items. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hex(r: () => number, n: number): string {
  let out = '';
  while (out.length < n) out += Math.floor(r() * 16).toString(16);
  return out;
}

function bigId(r: () => number): string {
  return `${1 + Math.floor(r() * 8)}${Array.from({ length: 18 }, () => Math.floor(r() * 10)).join('')}`;
}

const IMG = (r: () => number): string =>
  `<?xml version="1.0"?>\n<msg>\n\t<img aeskey="${hex(r, 32)}" encryver="1" cdnthumbaeskey="${hex(r, 32)}" cdnthumburl="3057020100044b3049020100020${hex(r, 120)}" cdnthumblength="3187" cdnthumbheight="120" cdnthumbwidth="90" cdnmidheight="0" cdnmidwidth="0" cdnhdheight="0" cdnhdwidth="0" cdnmidimgurl="3057020100044b3049020100020${hex(r, 120)}" length="${Math.floor(r() * 200000)}" cdnbigimgurl="3057020100044b3049020100020${hex(r, 120)}" hdlength="52127" md5="${hex(r, 32)}" />\n\t<platform_signature></platform_signature>\n\t<imgdatahash></imgdatahash>\n</msg>\n`;

const FEED = (r: () => number): string =>
  `<?xml version="1.0"?>\n<msg>\n\t<appmsg appid="" sdkver="0">\n\t\t<title>当前微信版本不支持展示该内容，请升级至最新版本。</title>\n\t\t<type>51</type>\n\t\t<finderFeed>\n\t\t\t<objectId>14${bigId(r)}</objectId>\n\t\t\t<feedType>4</feedType>\n\t\t\t<nickname>某某旗舰店</nickname>\n\t\t\t<avatar>https://wx.qlogo.cn/finderhead/ver_1/${hex(r, 40)}/0</avatar>\n\t\t\t<desc>新款上市 #夏季穿搭</desc>\n\t\t\t<mediaCount>1</mediaCount>\n\t\t\t<objectNonceId>${bigId(r)}_0_0_0_0_0</objectNonceId>\n\t\t\t<username>${ME}</username>\n\t\t\t<mediaList><media><mediaType>4</mediaType><url>http://wxapp.tc.qq.com/251/20302/stodownload?encfilekey=${hex(r, 60)}&amp;a=1&amp;bizid=1023</url><thumbUrl>http://wxapp.tc.qq.com/251/20304/${hex(r, 40)}</thumbUrl><width>1080</width><height>1920</height><videoPlayDuration>23</videoPlayDuration></media></mediaList>\n\t\t</finderFeed>\n\t</appmsg>\n</msg>\n`;

const LINK = (r: () => number): string =>
  `<?xml version="1.0"?>\n<msg>\n\t<appmsg appid="" sdkver="0">\n\t\t<title>夏季新品上架｜限时 8 折</title>\n\t\t<des>点击查看详情</des>\n\t\t<type>5</type>\n\t\t<url>https://mp.weixin.qq.com/s?__biz=MzI1NjA3MTQ0MA==&amp;mid=${Math.floor(r() * 1e9)}&amp;idx=1&amp;sn=${hex(r, 32)}#rd</url>\n\t\t<sourceusername>gh_7a3c9e1f2b4d</sourceusername>\n\t\t<sourcedisplayname>某某旗舰店</sourcedisplayname>\n\t\t<thumburl>https://mmbiz.qpic.cn/mmbiz_jpg/${hex(r, 30)}/640</thumburl>\n\t</appmsg>\n</msg>\n`;

const esc = (s: string): string => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');

const QUOTE = (r: () => number): string =>
  `<?xml version="1.0"?>\n<msg><appmsg appid="" sdkver="0"><title>就要这个颜色</title><type>57</type><refermsg><type>3</type><svrid>${bigId(r)}</svrid><fromusr>${ME}</fromusr><displayname>某某旗舰店</displayname><content>${esc(`<msg><img aeskey="${hex(r, 32)}" length="48213" md5="${hex(r, 32)}" /></msg>`)}</content><createtime>1731059011</createtime></refermsg></appmsg></msg>`;

const REVOKE = (r: () => number, session: string): string =>
  `<sysmsg type="revokemsg"><revokemsg><session>${session}</session><msgid>1048377195</msgid><newmsgid>${bigId(r)}</newmsgid><replacemsg><![CDATA["小林" 撤回了一条消息]]></replacemsg></revokemsg></sysmsg>`;

const FUNCTIONMSG = (r: () => number): string => {
  const obj = `14${bigId(r)}`;
  return `<sysmsg type="functionmsg"><functionmsg><cgi>/cgi-bin/micromsg-bin/findergetlivetips</cgi><cmdid>6407</cmdid><functionmsgid>FinderLiveNotificationMsg_LiveStartNotifyMsg_${obj}_2_${obj}_2</functionmsgid><version>0</version><op>0</op><retryinterval>150</retryinterval><retrycount>3</retrycount><reportid>231759</reportid><successkey>101</successkey><failkey>102</failkey><finalfailkey>103</finalfailkey><custombuff>CAA=</custombuff><businessid>70001</businessid><actiontime>0</actiontime><delaytime>0</delaytime></functionmsg></sysmsg>`;
};

const OTHER: readonly ((r: () => number) => [number, string])[] = [
  (r) => [34, `<msg><voicemsg endflag="1" voiceformat="4" voicelength="${Math.floor(r() * 60000)}" length="6412" bufid="0" aeskey="${hex(r, 32)}" voiceurl="3052020100044b30490201${hex(r, 100)}" voicemd5="" /></msg>`],
  (r) => [43, `<?xml version="1.0"?>\n<msg>\n\t<videomsg aeskey="${hex(r, 32)}" cdnvideourl="3057020100044b3049${hex(r, 100)}" cdnthumburl="3057020100044b3049${hex(r, 100)}" length="2840193" playlength="17" cdnthumblength="9932" cdnthumbwidth="288" cdnthumbheight="512" md5="${hex(r, 32)}" newmd5="${hex(r, 32)}" />\n</msg>\n`],
  (r) => [47, `<msg><emoji fromusername = "wxid_p4k2m9x7c1a822" type="2" md5="${hex(r, 32)}" len = "98211" cdnurl = "http://wxapp.tc.qq.com/262/20304/stodownload?m=${hex(r, 32)}&amp;filekey=${hex(r, 40)}&amp;bizid=1023" aeskey= "${hex(r, 32)}" width= "240" height= "240" desc= "" ></emoji> <gameext type="0" content="0" ></gameext></msg>`],
  () => [48, '<?xml version="1.0"?>\n<msg>\n\t<location x="31.230416" y="121.473701" scale="16" label="上海市黄浦区人民大道200号" maptype="roadmap" poiname="人民广场" poiid="qqmap_2918374650192837465" />\n</msg>\n'],
  (r) => [42, `<?xml version="1.0"?>\n<msg bigheadimgurl="http://wx.qlogo.cn/mmhead/${hex(r, 40)}/0" username="v3_${hex(r, 60)}@stranger" nickname="陈一一" province="浙江" city="杭州" sex="2" />\n`],
  (r) => [49, `<msg><appmsg appid="" sdkver="0"><title>报价单-2024Q3.xlsx</title><type>6</type><appattach><totallen>20931</totallen><attachid>@cdn_${hex(r, 60)}_1</attachid><fileext>xlsx</fileext><cdnattachurl>${hex(r, 80)}</cdnattachurl><aeskey>${hex(r, 32)}</aeskey></appattach><md5>${hex(r, 32)}</md5></appmsg></msg>`],
];

function item(r: () => number, i: number, msgType: number, content: string): string {
  const session = `${hex(r, 64)}@findermsg`;
  const peer = `fv1_${hex(r, 64)}@findermsgstranger`;
  const sent = r() < 0.4;
  const createTime = 1731059312 + i;
  const isControl = content.startsWith('<sysmsg type="functionmsg"');
  const body = msgType === 10002 && content.startsWith('<sysmsg type="revokemsg"') ? REVOKE(r, session) : content;
  // Bare numbers for ids, as providers send them; JSON.stringify escapes the content.
  return `{"syncKeyType":1,"itemType":1,"subType":0,"content":{"msg":{"MsgId":${1048377195 + i},"FromUserName":{"string":${JSON.stringify(isControl ? '' : sent ? ME : peer)}},"ToUserName":{"string":${JSON.stringify(isControl ? '' : sent ? peer : ME)}},"MsgType":${msgType},"Content":{"string":${JSON.stringify(body)}},"Status":3,"ImgStatus":1,"ImgBuf":{"iLen":0},"CreateTime":${createTime},"MsgSource":${JSON.stringify(r() < 0.5 ? '' : `<msgsource><bizflag>0</bizflag><sec_msg_node><uuid>${hex(r, 32)}_</uuid></sec_msg_node></msgsource>`)},"NewMsgId":${bigId(r)},"MsgSeq":0},"msgSessionId":${JSON.stringify(isControl ? '' : session)},"seq":${i},"extinfo":"CAE=","isSender":${sent ? 1 : 0}}}`;
}

/** Builds `n` items of the realistic mix, as the exact bytes a provider would send. */
export function buildTransformMix(n: number, seed = 42): { items: Uint8Array[]; mix: Record<string, number> } {
  const r = rng(seed);
  const enc = new TextEncoder();
  const items: Uint8Array[] = [];
  const mix: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const p = r();
    let kind: string;
    let msgType: number;
    let content: string;
    if (p < 0.7) {
      kind = 'text';
      msgType = 1;
      content = TEXTS[Math.floor(r() * TEXTS.length)] ?? '';
    } else if (p < 0.85) {
      kind = 'image';
      msgType = 3;
      content = IMG(r);
    } else if (p < 0.95) {
      const q = r();
      msgType = q < 0.8 ? 49 : 10002;
      if (q < 0.35) [kind, content] = ['appmsg/finder_feed', FEED(r)];
      else if (q < 0.6) [kind, content] = ['appmsg/link', LINK(r)];
      else if (q < 0.8) [kind, content] = ['appmsg/quote', QUOTE(r)];
      else if (q < 0.9) [kind, content] = ['sysmsg/revoke', '<sysmsg type="revokemsg"/>'];
      else [kind, content] = ['sysmsg/functionmsg', FUNCTIONMSG(r)];
    } else {
      const make = OTHER[Math.floor(r() * OTHER.length)] ?? OTHER[0];
      [msgType, content] = make === undefined ? [1, ''] : make(r);
      kind = 'other';
    }
    mix[kind] = (mix[kind] ?? 0) + 1;
    items.push(enc.encode(item(r, i, msgType, content)));
  }
  for (const k of Object.keys(mix)) mix[k] = Math.round(((mix[k] ?? 0) / n) * 1000) / 1000;
  return { items, mix };
}

/** Items/s of `fn` over all items, measured for about `ms`. */
function measure(items: readonly Uint8Array[], ms: number, fn: (b: Uint8Array, i: number) => void): number {
  let done = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < ms) {
    for (const b of items) fn(b, done++);
    t = performance.now();
  }
  return (done / (t - t0)) * 1000;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

/**
 * Measures transform throughput beside the JSON.parse ceiling.
 *
 * @returns Numbers only; printing is the caller's business.
 */
export function runTransformBench(opts: TransformBenchOptions = {}): Promise<TransformBenchResult> {
  const n = opts.items ?? 20_000;
  const durationMs = opts.durationMs ?? 4000;
  const rounds = opts.rounds ?? 8;
  const { items, mix } = buildTransformMix(n);
  const origin: Origin = { source: 'bench', sourceType: 'gewe', tenant: 'corp', staffId: 'staff' };
  const decoder = new TextDecoder('utf-8', { fatal: true });

  let messages = 0;
  let events = 0;
  let deadLetters = 0;
  for (const [index, bytes] of items.entries()) {
    const out = transformFinderItem({ origin, bytes, fetchedAt: 0, cursor: 'bench', index }, 0);
    messages += out.messages.length;
    events += out.events.length;
    deadLetters += out.deadLetters.length;
  }

  let sink = 0;
  const parse = (bytes: Uint8Array): void => {
    sink += typeof JSON.parse(decoder.decode(bytes)) === 'object' ? 1 : 0;
  };
  const transform = (bytes: Uint8Array, index: number): void => {
    sink += transformFinderItem({ origin, bytes, fetchedAt: 0, cursor: 'bench', index }, 0).messages.length;
  };
  // Warm-up: let both reach optimised code before anything is timed.
  measure(items, 500, parse);
  measure(items, 1000, transform);
  const parseRates: number[] = [];
  const transformRates: number[] = [];
  const ratios: number[] = [];
  const slice = durationMs / rounds;
  for (let r = 0; r < rounds; r++) {
    const p = measure(items, slice, parse);
    const t = measure(items, slice, transform);
    parseRates.push(p);
    transformRates.push(t);
    ratios.push(t / p);
  }
  if (sink < 0) throw new Error('unreachable: keeps the work observable');
  const transformPerSec = median(transformRates);
  const jsonParsePerSec = median(parseRates);

  const targetPerSec = 100_000;
  return Promise.resolve({
    items: n,
    avgItemBytes: Math.round(items.reduce((s, b) => s + b.byteLength, 0) / n),
    mix,
    transformPerSec: Math.round(transformPerSec),
    transformBestPerSec: Math.round(Math.max(...transformRates)),
    jsonParsePerSec: Math.round(jsonParsePerSec),
    jsonParseBestPerSec: Math.round(Math.max(...parseRates)),
    ratio: Math.round(median(ratios) * 1000) / 1000,
    messages,
    events,
    deadLetters,
    targetPerSec,
    meetsTarget: transformPerSec >= targetPerSec,
  });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await runTransformBench({});
  console.log(`items              ${result.items} (avg ${result.avgItemBytes} B), mix ${JSON.stringify(result.mix)}`);
  console.log(`JSON.parse ceiling  ${result.jsonParsePerSec.toLocaleString('en')} items/s (median; best ${result.jsonParseBestPerSec.toLocaleString('en')})`);
  console.log(`transformFinderItem ${result.transformPerSec.toLocaleString('en')} messages/s (median; best ${result.transformBestPerSec.toLocaleString('en')})`);
  console.log(`ratio              ${result.ratio} of the ceiling; target ${result.targetPerSec.toLocaleString('en')}/s: ${result.meetsTarget ? 'met' : 'MISSED'}`);
  console.log(JSON.stringify(result));
}
