/**
 * Content builders: the `Content.string` (and MsgSource) of each simulated message kind.
 *
 * Every skeleton follows reference/wechat-finder-and-yunhu-formats.md §A8 with invented values,
 * including the quirks real traffic has and parsers trip on: spaces around `=` in emoji XML,
 * `&amp;` in attribute URLs, CDATA around appmsg children and around red-packet `<type>`,
 * entity-encoded XML inside a quote's `<refermsg><content>`, XML inside CDATA in chat records,
 * uint64 finder objectIds above 2^63, U+2005 after an @mention, astral-plane emoji.
 *
 * Builders are pure: (rng, context) in, strings out. They run for every generated message, so
 * they use template strings and small pools, never an XML library.
 */

import type { AccountIdentity, SimSession } from './identity.ts';
import type { Rng } from './random.ts';

/** What the stream knows about a message before its content is built. */
export interface BuildContext {
  readonly rng: Rng;
  readonly identity: AccountIdentity;
  readonly session: SimSession;
  readonly isSender: 0 | 1;
  readonly from: string;
  readonly to: string;
  readonly createTime: number;
  readonly newMsgId: string;
}

/** The message a builder refers to (the revoked one, the quoted one, the file's placeholder). */
export interface ReferencedMessage {
  readonly msgId: number;
  readonly newMsgId: string;
  readonly msgType: number;
  readonly from: string;
  readonly createTime: number;
  readonly content: string;
  readonly msgSource: string;
  readonly senderName: string;
  readonly fields: Readonly<Record<string, string>>;
}

/** What a builder produces. Fields left out take the defaults of a plain text message. */
export interface BuiltContent {
  readonly content: string;
  readonly msgSource: string;
  /** The message's primary text ('' when the kind has none); see ExpectedMessage.text. */
  readonly text: string;
  /** Kind-specific facts for the ground truth (md5, target ids, titles …). */
  readonly fields: Readonly<Record<string, string>>;
  readonly status?: number;
  readonly imgStatus?: number;
  /** Inline thumbnail (base64) and its length for ImgBuf, when present. */
  readonly imgBuf?: { readonly len: number; readonly base64: string };
}

const NO_FIELDS: Readonly<Record<string, string>> = Object.freeze({});

// ---------------------------------------------------------------------------------------------
// Text

const PHRASES = [
  '请问这款还有现货吗？',
  '下单后多久发货',
  '在吗',
  '哈喽',
  '你好，想咨询一下',
  '这个颜色有M码吗',
  '可以便宜一点吗',
  '已经拍了，麻烦尽快发货',
  '快递到哪里了？',
  '收到了，质量很好',
  '谢谢老板',
  '直播间那款链接在哪',
  '什么时候开播？',
  '包邮吗',
  '能开发票吗',
  '尺码偏大还是偏小',
  '好的',
  '嗯嗯',
  '1',
  '12',
  '文本',
  '支持七天无理由退换吗',
  '我昨天买的还没发货',
  '请问怎么联系售后',
  '视频里那个背景音乐叫什么',
  'ok',
  'Is this available in blue?',
  '亲，已为您备注优先发货',
  '这边帮您查一下物流',
  '活动截止到今晚12点',
  '价格是"到手价"吗？',
  '好的<3',
  '满 199 减 30 & 包邮',
] as const;

const EMOJI = ['😂', '🙏', '👍', '🎉', '💰', '📦', '🔥', '🌙', '😊', '❤️', '👀', '🤔', '[捂脸]', '[微笑]', '[呲牙]', '[玫瑰]'] as const;

/** Text variants the opening of a stream forces so every account shows each of them early. */
export type TextVariant = 'plain' | 'emoji' | 'mention' | 'multiline';

export function buildText(ctx: BuildContext, variant?: TextVariant): BuiltContent {
  const { rng } = ctx;
  const v: TextVariant =
    variant ?? (rng.chance(0.25) ? 'emoji' : rng.chance(0.04) ? 'mention' : rng.chance(0.04) ? 'multiline' : 'plain');
  let text: string;
  let msgSource = msgSourceFor(rng);
  switch (v) {
    case 'plain':
      text = rng.chance(0.3) ? `${rng.pick(PHRASES)}${rng.pick(PHRASES)}` : rng.pick(PHRASES);
      break;
    case 'emoji':
      text = `${rng.pick(PHRASES)}${rng.pick(EMOJI)}${rng.chance(0.5) ? ` ${rng.pick(PHRASES)}` : ''}`;
      break;
    case 'mention': {
      // "@name" is followed by U+2005 (four-per-em space), never an ordinary space.
      text = `@${ctx.session.peerName}\u2005${rng.pick(PHRASES)}`;
      msgSource = `<msgsource><atuserlist><![CDATA[,${ctx.session.peer}]]></atuserlist><pua>1</pua></msgsource>`;
      break;
    }
    case 'multiline':
      text = `${rng.pick(PHRASES)}\n${rng.pick(PHRASES)}\t"${rng.pick(EMOJI)}"\\`;
      break;
  }
  return { content: text, msgSource, text, fields: v === 'plain' ? NO_FIELDS : { variant: v } };
}

const MSG_SOURCES = [
  '',
  '',
  '<msgsource><pua>1</pua></msgsource>',
  '<msgsource><bizflag>0</bizflag><pua>1</pua></msgsource>',
  '<msgsource><bizflag>0</bizflag></msgsource>',
  '<msgsource>\n\t<tmp_node>\n\t\t<publisher-id></publisher-id>\n\t</tmp_node>\n</msgsource>\n',
] as const;

function msgSourceFor(rng: Rng): string {
  if (rng.chance(0.15)) {
    return `<msgsource>\n\t<sec_msg_node>\n\t\t<uuid>${rng.hex(32)}_</uuid>\n\t</sec_msg_node>\n\t<signature>v1_${rng.hex(8)}</signature>\n</msgsource>\n`;
  }
  return rng.pick(MSG_SOURCES);
}

// ---------------------------------------------------------------------------------------------
// Media

function cdnUrl(rng: Rng): string {
  return `3057020100044b30490201000204${rng.hex(8)}02032f5b0d0204${rng.hex(8)}020465${rng.hex(6)}042436${rng.hex(72)}0204051438010201000405004c4c6d00`;
}

// A tiny JPEG header, base64: the start of a thumbnail as ImgBuf.buffer shows it.
const THUMB_BASE64 = '/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/wAALCAB4AFoBAREA/8QAFQABAQAAAAAAAAAAAAAAAAAAAAX/xAAUEAEAAAAAAAAAAAAAAAAAAAAA/9oACAEBAAA/AKp//9k=';

export function buildImage(ctx: BuildContext): BuiltContent {
  const { rng } = ctx;
  const aeskey = rng.hex(32);
  const md5 = rng.hex(32);
  const url = cdnUrl(rng);
  const length = String(rng.range(8_000, 900_000));
  const thumbLength = rng.range(900, 9_000);
  const width = rng.pick(['120', '90', '80']);
  const content = `<?xml version="1.0"?>\n<msg>\n\t<img aeskey="${aeskey}" encryver="1" cdnthumbaeskey="${aeskey}" cdnthumburl="${url}" cdnthumblength="${thumbLength}" cdnthumbheight="120" cdnthumbwidth="${width}" cdnmidheight="0" cdnmidwidth="0" cdnhdheight="0" cdnhdwidth="0" cdnmidimgurl="${url}" length="${length}" cdnbigimgurl="${url}" hdlength="${rng.range(1_000, 60_000)}" md5="${md5}" />\n\t<platform_signature></platform_signature>\n\t<imgdatahash></imgdatahash>\n</msg>\n`;
  const withThumb = rng.chance(0.1);
  return {
    content,
    msgSource: rng.chance(0.6) ? '<msgsource><bizflag>0</bizflag></msgsource>' : msgSourceFor(rng),
    text: '',
    fields: { md5, length, aeskey },
    imgStatus: 2,
    ...(withThumb ? { imgBuf: { len: 186, base64: THUMB_BASE64 } } : {}),
  };
}

export function buildVoice(ctx: BuildContext): BuiltContent {
  const { rng } = ctx;
  const voicelength = String(rng.range(800, 59_000));
  const length = String(rng.range(1_000, 60_000));
  const content = `<msg><voicemsg endflag="1" cancelflag="0" forwardflag="0" voiceformat="4" voicelength="${voicelength}" length="${length}" bufid="0" aeskey="${rng.hex(32)}" voiceurl="${cdnUrl(rng)}" voicemd5="" clientmsgid="${rng.hex(64)}" fromusername="${ctx.from}" /></msg>`;
  return { content, msgSource: '', text: '', fields: { voicelength, length } };
}

export function buildVideo(ctx: BuildContext): BuiltContent {
  const { rng } = ctx;
  const md5 = rng.hex(32);
  const length = String(rng.range(200_000, 30_000_000));
  const playlength = String(rng.range(3, 180));
  const aeskey = rng.hex(32);
  const content = `<?xml version="1.0"?>\n<msg>\n\t<videomsg aeskey="${aeskey}" cdnvideourl="${cdnUrl(rng)}" cdnthumbaeskey="${aeskey}" cdnthumburl="${cdnUrl(rng)}" length="${length}" playlength="${playlength}" cdnthumblength="${rng.range(2_000, 20_000)}" cdnthumbwidth="288" cdnthumbheight="512" fromusername="${ctx.from}" md5="${md5}" newmd5="${rng.hex(32)}" isplaceholder="0" rawmd5="" rawlength="0" cdnrawvideourl="" cdnrawvideoaeskey="" overwritenewmsgid="0" originsourcemd5="" isad="0" />\n</msg>\n`;
  return { content, msgSource: msgSourceFor(rng), text: '', fields: { md5, length, playlength }, imgStatus: 2 };
}

export function buildEmoji(ctx: BuildContext): BuiltContent {
  const { rng } = ctx;
  const md5 = rng.hex(32);
  const len = String(rng.range(5_000, 400_000));
  const key = rng.hex(32);
  // Real samples put spaces around "=" and keep "&amp;" in the URLs.
  const content = `<msg><emoji fromusername = "${ctx.from}" tousername = "${ctx.to}" type="2" idbuffer="media:0_0" md5="${md5}" len = "${len}" productid="" androidmd5="${md5}" androidlen="${len}" cdnurl = "http://wxapp.tc.qq.com/262/20304/stodownload?m=${md5}&amp;filekey=3033020101041f301d020201060402535a0410${key}&amp;hy=SZ&amp;storeid=26a8f3b9e000d4c21&amp;bizid=1023" designerid = "" thumburl = "" encrypturl = "http://wxapp.tc.qq.com/262/20304/stodownload?m=${key}&amp;bizid=1023" aeskey= "${key}" externurl = "" externmd5 = "" width= "240" height= "240" tpurl= "" tpauthkey= "" attachedtext= "" attachedtextcolor= "" lensid= "" emojiattr= "" linkid= "" desc= "" ></emoji> <gameext type="0" content="0" ></gameext></msg>`;
  return { content, msgSource: '', text: '', fields: { md5, len } };
}

const PLACES = [
  { x: '31.230416', y: '121.473701', label: '上海市黄浦区人民大道200号', poiname: '人民广场', city: '上海市', adcode: '310101' },
  { x: '39.908823', y: '116.397470', label: '北京市东城区东长安街', poiname: '天安门广场', city: '北京市', adcode: '110101' },
  { x: '22.543096', y: '114.057865', label: '广东省深圳市福田区福中三路', poiname: '深圳市民中心', city: '深圳市', adcode: '440304' },
  { x: '30.274085', y: '120.155070', label: '浙江省杭州市西湖区龙井路1号', poiname: '西湖风景名胜区', city: '杭州市', adcode: '330106' },
] as const;

export function buildLocation(ctx: BuildContext): BuiltContent {
  const { rng } = ctx;
  const p = rng.pick(PLACES);
  const content = `<?xml version="1.0"?>\n<msg>\n\t<location x="${p.x}" y="${p.y}" scale="16" label="${p.label}" maptype="roadmap" poiname="${p.poiname}" poiid="qqmap_${rng.digits(19)}" buildingId="" floorName="" poiCategoryTips="旅游景点:公园广场" poiBusinessHour="全天开放" poiPhone="" poiPriceTips="" isFromPoiList="true" adcode="${p.adcode}" cityname="${p.city}" />\n</msg>\n`;
  return { content, msgSource: '', text: '', fields: { x: p.x, y: p.y, label: p.label, poiname: p.poiname } };
}

export function buildCard(ctx: BuildContext): BuiltContent {
  const { rng } = ctx;
  const username = `v3_020b3826fd0301000000000046d92c7a1b4e5f000000501ea9a3dba12f95f6b60a0536a1adb6${rng.hex(24)}@stranger`;
  const nickname = rng.pick(['陈一一', '小林', '阿杰', '王小美']);
  const head = `http://wx.qlogo.cn/mmhead/ver_1/${rng.hex(40)}`;
  const content = `<?xml version="1.0"?>\n<msg bigheadimgurl="${head}/0" smallheadimgurl="${head}/132" username="${username}" nickname="${nickname}" fullpy="" shortpy="" alias="" imagestatus="4" scene="17" province="浙江" city="杭州" sign="" sex="2" certflag="0" certinfo="" brandIconUrl="" brandHomeUrl="" brandSubscriptConfigUrl="" brandFlags="0" regionCode="CN_Zhejiang_Hangzhou" biznamecardinfo="" antispamticket="v4_000b708f0b04000001000000000079b0${rng.hex(40)}@stranger" />\n`;
  return { content, msgSource: '', text: '', fields: { username, nickname } };
}

// ---------------------------------------------------------------------------------------------
// appmsg (MsgType 49)

const LINK_TITLES = ['夏季新品上架｜限时 8 折', '双十一预售攻略', '新店开业，全场包邮', '如何挑选一双好跑鞋？', '会员日福利来啦'] as const;
const LINK_DESCS = ['点击查看详情', '戳这里领取优惠券', '全文约 3 分钟阅读', ''] as const;

function appmsgTail(ctx: BuildContext): string {
  return `<fromusername>${ctx.from}</fromusername>\n\t<scene>0</scene>\n\t<appinfo><version>1</version><appname></appname></appinfo>\n\t<commenturl></commenturl>`;
}

export function buildLink(ctx: BuildContext): BuiltContent {
  const { rng } = ctx;
  const title = rng.pick(LINK_TITLES);
  const des = rng.pick(LINK_DESCS);
  const biz = rng.hex(8);
  const url = `https://mp.weixin.qq.com/s?__biz=MzI1NjA3MTQ0MA==&amp;mid=22475${rng.digits(5)}&amp;idx=1&amp;sn=${rng.hex(32)}&amp;scene=0#rd`;
  const content = `<?xml version="1.0"?>\n<msg>\n\t<appmsg appid="" sdkver="0">\n\t\t<title>${title}</title>\n\t\t<des>${des}</des>\n\t\t<action />\n\t\t<type>5</type>\n\t\t<showtype>0</showtype>\n\t\t<url>${url}</url>\n\t\t<appattach><totallen>0</totallen><cdnthumburl>${cdnUrl(rng)}</cdnthumburl><cdnthumbmd5>${rng.hex(32)}</cdnthumbmd5><cdnthumblength>${rng.range(5_000, 60_000)}</cdnthumblength><cdnthumbwidth>600</cdnthumbwidth><cdnthumbheight>255</cdnthumbheight><cdnthumbaeskey>${rng.hex(32)}</cdnthumbaeskey></appattach>\n\t\t<sourceusername>gh_${biz}${rng.hex(4)}</sourceusername>\n\t\t<sourcedisplayname>${ctx.identity.finderName}</sourcedisplayname>\n\t\t<thumburl>https://mmbiz.qpic.cn/mmbiz_jpg/${rng.hex(40)}/640?wxtype=jpeg&amp;wxfrom=0</thumburl>\n\t\t<mmreadershare><itemshowtype>0</itemshowtype></mmreadershare>\n\t</appmsg>\n\t${appmsgTail(ctx)}\n</msg>\n`;
  return { content, msgSource: msgSourceFor(rng), text: title, fields: { title, description: des, url: url.replaceAll('&amp;', '&') } };
}

const FILES = [
  ['报价单-2024Q3', 'xlsx'],
  ['产品手册', 'pdf'],
  ['尺码表', 'png'],
  ['合同(终版)', 'docx'],
  ['发货清单 11月', 'csv'],
] as const;

/** The upload-in-progress placeholder (49/74). The next message is the finished file (49/6). */
export function buildFilePlaceholder(ctx: BuildContext): BuiltContent {
  const { rng } = ctx;
  const [base, ext] = rng.pick(FILES);
  const fileName = `${base}.${ext}`;
  const totalLen = String(rng.range(2_000, 8_000_000));
  const md5 = rng.hex(32);
  const content = `<msg><appmsg appid="" sdkver="0"><title><![CDATA[${fileName}]]></title><type>74</type><showtype>0</showtype><appattach><totallen>${totalLen}</totallen><fileext><![CDATA[${ext}]]></fileext><fileuploadtoken>v1_${rng.hex(48)}</fileuploadtoken><status>0</status></appattach><md5><![CDATA[${md5}]]></md5><laninfo><![CDATA[]]></laninfo></appmsg><fromusername>${ctx.from}</fromusername></msg>`;
  return { content, msgSource: '', text: fileName, fields: { fileName, fileExt: ext, totalLen, md5 } };
}

/** The finished file (49/6); `overwrite_newmsgid` names its placeholder. */
export function buildFile(ctx: BuildContext, placeholder: ReferencedMessage): BuiltContent {
  const { rng } = ctx;
  const { fileName = 'file.bin', fileExt = 'bin', totalLen = '0', md5 = '' } = placeholder.fields;
  const aeskey = rng.hex(32);
  const cdn = cdnUrl(rng);
  const content = `<?xml version="1.0"?>\n<msg><appmsg appid="" sdkver="0"><title>${fileName}</title><type>6</type><appattach><totallen>${totalLen}</totallen><attachid>@cdn_${cdn}_${aeskey}_1</attachid><fileext>${fileExt}</fileext><cdnattachurl>${cdn}</cdnattachurl><aeskey>${aeskey}</aeskey><encryver>0</encryver><overwrite_newmsgid>${placeholder.newMsgId}</overwrite_newmsgid></appattach><md5>${md5}</md5></appmsg><fromusername>${ctx.from}</fromusername><scene>0</scene></msg>`;
  return {
    content,
    msgSource: '',
    text: fileName,
    fields: { fileName, fileExt, totalLen, md5, overwriteNewMsgId: placeholder.newMsgId },
  };
}

export function buildChatRecord(ctx: BuildContext): BuiltContent {
  const { rng } = ctx;
  const a = ctx.session.peerName;
  const b = ctx.identity.finderName;
  const l1 = rng.pick(PHRASES);
  const l2 = rng.pick(PHRASES);
  const title = `${a}和${b}的聊天记录`;
  const des = `${a}: ${l1}\n${b}: ${l2}`;
  const e1 = entityEncode(l1);
  const e2 = entityEncode(l2);
  // The record list is XML inside CDATA: a second-level parse. CDN URLs in it carry bare "&".
  const record = `<recordinfo><title>${title}</title><desc>${entityEncode(des)}</desc><datalist count="3"><dataitem datatype="1" dataid="${rng.hex(32)}"><datadesc>${e1}</datadesc><sourcename>${a}</sourcename><sourcetime>2024-11-08 17:21</sourcetime><srcMsgCreateTime>${ctx.createTime - 600}</srcMsgCreateTime></dataitem><dataitem datatype="1" dataid="${rng.hex(32)}"><datadesc>${e2}</datadesc><sourcename>${b}</sourcename><sourcetime>2024-11-08 17:22</sourcetime><srcMsgCreateTime>${ctx.createTime - 540}</srcMsgCreateTime></dataitem><dataitem datatype="2" dataid="${rng.hex(32)}"><cdndataurl>${cdnUrl(rng)}</cdndataurl><thumbfullmd5>${rng.hex(32)}</thumbfullmd5><sourcename>${a}</sourcename><sourcetime>2024-11-08 17:23</sourcetime><fullmd5>${rng.hex(32)}</fullmd5><cdnthumburl>http://wxapp.tc.qq.com/262/20304/stodownload?m=${rng.hex(32)}&bizid=1023</cdnthumburl></dataitem></datalist><favcreatetime>${ctx.createTime}000</favcreatetime></recordinfo>`;
  const content = `<?xml version="1.0"?>\n<msg>\n\t<appmsg appid="" sdkver="0">\n\t\t<title>${title}</title>\n\t\t<des>${entityEncode(des)}</des>\n\t\t<type>19</type>\n\t\t<url>https://support.weixin.qq.com/cgi-bin/mmsupport-bin/readtemplate?t=page/favorite_record__w_unsupport&amp;from=singlemessage&amp;isappinstalled=0</url>\n\t\t<appattach><totallen>0</totallen></appattach>\n\t\t<recorditem><![CDATA[${record}]]></recorditem>\n\t</appmsg>\n\t${appmsgTail(ctx)}\n</msg>\n`;
  return { content, msgSource: '', text: title, fields: { title, description: des } };
}

export function buildWeapp(ctx: BuildContext): BuiltContent {
  const { rng } = ctx;
  const title = rng.pick(['限时拼团 ¥19.9', '新人专享券', '点击查看商品详情', '砍一刀，帮我助力']);
  const gh = `gh_${rng.hex(12)}@app`;
  const appid = `wx${rng.hex(16)}`;
  const pagepath = `pages/goods/detail.html?id=${rng.range(10_000, 99_999)}&share=1`;
  const content = `<msg><appmsg appid="" sdkver="0"><title>${title}</title><des>某某商城</des><type>33</type><url>https://mp.weixin.qq.com/mp/waerrpage?appid=${appid}&amp;type=upgrade&amp;upgradetype=3#wechat_redirect</url><sourceusername>${gh}</sourceusername><sourcedisplayname>某某商城</sourcedisplayname><weappinfo><username><![CDATA[${gh}]]></username><appid><![CDATA[${appid}]]></appid><type>2</type><version>${rng.range(10, 400)}</version><weappiconurl><![CDATA[http://mmbiz.qpic.cn/mmbiz_png/${rng.hex(40)}/640?wx_fmt=png&wxfrom=200]]></weappiconurl><pagepath><![CDATA[${pagepath}]]></pagepath><shareId><![CDATA[0_${appid}_${rng.hex(32)}_${ctx.createTime}_0]]></shareId></weappinfo></appmsg><fromusername>${ctx.from}</fromusername></msg>`;
  return { content, msgSource: '', text: title, fields: { title, description: '某某商城', appid, pagepath } };
}

const FEED_DESCS = ['新款上市 #夏季穿搭', '周末去哪儿 #露营', '今天的晚餐🍜', '开箱！#数码', '直播回放来啦'] as const;
const UNSUPPORTED_TITLE = '当前微信版本不支持展示该内容，请升级至最新版本。';

export function buildFinderFeed(ctx: BuildContext): BuiltContent {
  const { rng } = ctx;
  const objectId = rng.uint64ObjectId();
  const desc = rng.pick(FEED_DESCS);
  const nickname = ctx.identity.finderName;
  // videoPlayDuration sometimes carries junk after the number in real traffic ("10&gt;&gt;").
  const duration = rng.chance(0.1) ? `${rng.range(5, 60)}&gt;&gt;` : String(rng.range(5, 60));
  const content = `<?xml version="1.0"?>\n<msg>\n\t<appmsg appid="" sdkver="0">\n\t\t<title>${UNSUPPORTED_TITLE}</title>\n\t\t<type>51</type>\n\t\t<url>https://support.weixin.qq.com/update/</url>\n\t\t<finderFeed>\n\t\t\t<objectId>${objectId}</objectId>\n\t\t\t<feedType>4</feedType>\n\t\t\t<nickname>${nickname}</nickname>\n\t\t\t<avatar>https://wx.qlogo.cn/finderhead/ver_1/${rng.hex(40)}/0</avatar>\n\t\t\t<desc>${desc}</desc>\n\t\t\t<mediaCount>1</mediaCount>\n\t\t\t<objectNonceId>${rng.digits(19)}_0_0_0_0_0</objectNonceId>\n\t\t\t<liveId>0</liveId>\n\t\t\t<username>${ctx.identity.finder}</username>\n\t\t\t<authIconType>0</authIconType>\n\t\t\t<mediaList><media><mediaType>4</mediaType><url>http://wxapp.tc.qq.com/251/20302/stodownload?encfilekey=${rng.hex(64)}&amp;a=1&amp;bizid=1023&amp;idx=1&amp;m=${rng.hex(32)}</url><thumbUrl>http://wxapp.tc.qq.com/251/20304/stodownload?m=${rng.hex(32)}&amp;bizid=1023</thumbUrl><width>1080</width><height>1920</height><coverUrl></coverUrl><fullCoverUrl></fullCoverUrl><videoPlayDuration>${duration}</videoPlayDuration></media></mediaList>\n\t\t</finderFeed>\n\t</appmsg>\n\t<fromusername>${ctx.from}</fromusername>\n</msg>\n`;
  return {
    content,
    msgSource: '<msgsource>\n\t<tmp_node>\n\t\t<publisher-id></publisher-id>\n\t</tmp_node>\n</msgsource>\n',
    text: UNSUPPORTED_TITLE,
    fields: { title: UNSUPPORTED_TITLE, objectId, nickname, desc },
  };
}

export function buildFinderLive(ctx: BuildContext): BuiltContent {
  const { rng } = ctx;
  const liveId = `20${rng.digits(17)}`;
  const objectId = rng.uint64ObjectId();
  const desc = rng.pick(['今晚8点新品直播', '清仓特卖最后一场', '带你逛展']);
  const content = `<msg><appmsg appid="" sdkver="0"><title>正在直播</title><type>63</type><finderLive><finderLiveID>${liveId}</finderLiveID><finderUsername>${ctx.identity.finder}</finderUsername><finderObjectID>${objectId}</finderObjectID><finderNonceID>${rng.digits(19)}_0_0_2_2_0</finderNonceID><nickname><![CDATA[${ctx.identity.finderName}]]></nickname><desc><![CDATA[${desc}]]></desc><headUrl>https://wx.qlogo.cn/finderhead/${rng.hex(40)}/0</headUrl><liveStatus>1</liveStatus><media><coverUrl>http://wxapp.tc.qq.com/251/20350/stodownload?m=${rng.hex(32)}&amp;bizid=1023</coverUrl><height>1920</height><width>1080</width></media></finderLive></appmsg></msg>`;
  return { content, msgSource: '', text: '正在直播', fields: { title: '正在直播', liveId, objectId, desc } };
}

/** XML-escapes text for element content: the "&lt;msg&gt;" layer of a quote's refermsg. */
function entityEncode(s: string): string {
  return s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

const REPLIES = ['就要这个颜色', '这个还有吗', '好的，收到', '这个尺码', '同款有吗？😂'] as const;

/** A reply quoting `ref`: the quoted message's XML travels entity-encoded inside `<content>`. */
export function buildQuote(ctx: BuildContext, ref: ReferencedMessage): BuiltContent {
  const { rng } = ctx;
  const title = rng.pick(REPLIES);
  const content = `<?xml version="1.0"?>\n<msg>\n\t<appmsg appid="" sdkver="0">\n\t\t<title>${title}</title>\n\t\t<type>57</type>\n\t\t<refermsg>\n\t\t\t<type>${ref.msgType}</type>\n\t\t\t<svrid>${ref.newMsgId}</svrid>\n\t\t\t<fromusr>${ref.from}</fromusr>\n\t\t\t<chatusr>${ref.from}</chatusr>\n\t\t\t<displayname>${ref.senderName}</displayname>\n\t\t\t<content>${entityEncode(ref.content)}</content>\n\t\t\t<msgsource>${entityEncode(ref.msgSource)}</msgsource>\n\t\t\t<createtime>${ref.createTime}</createtime>\n\t\t</refermsg>\n\t</appmsg>\n\t<fromusername>${ctx.from}</fromusername>\n</msg>\n`;
  return { content, msgSource: msgSourceFor(rng), text: title, fields: { title, referNewMsgId: ref.newMsgId, referType: String(ref.msgType) } };
}

export function buildTransfer(ctx: BuildContext): BuiltContent {
  const { rng } = ctx;
  const amount = `${rng.range(0, 520)}.${rng.digits(2)}`;
  const feedesc = `￥${amount}`;
  const payer = ctx.isSender === 1 ? ctx.session.me : ctx.session.peer;
  const receiver = ctx.isSender === 1 ? ctx.session.peer : ctx.session.me;
  const upgrade = 'https://support.weixin.qq.com/cgi-bin/mmsupport-bin/readtemplate?t=page/common_page__upgrade&text=text001&btn_text=btn_text_0';
  const des = `收到转账${amount}元。如需收钱，请点此升级至最新版本`;
  const content = `<msg>\n<appmsg appid="" sdkver="">\n<title><![CDATA[微信转账]]></title>\n<des><![CDATA[${des}]]></des>\n<action></action>\n<type>2000</type>\n<content><![CDATA[]]></content>\n<url><![CDATA[${upgrade}]]></url>\n<thumburl><![CDATA[${upgrade}]]></thumburl>\n<lowurl></lowurl>\n<extinfo>\n</extinfo>\n<wcpayinfo>\n<paysubtype>1</paysubtype>\n<feedesc><![CDATA[${feedesc}]]></feedesc>\n<transcationid><![CDATA[53010001${rng.digits(24)}]]></transcationid>\n<transferid><![CDATA[1000050001${rng.digits(22)}]]></transferid>\n<invalidtime><![CDATA[${ctx.createTime + 86_400}]]></invalidtime>\n<begintransfertime><![CDATA[${ctx.createTime}]]></begintransfertime>\n<effectivedate><![CDATA[1]]></effectivedate>\n<pay_memo><![CDATA[]]></pay_memo>\n<receiver_username><![CDATA[${receiver}]]></receiver_username>\n<payer_username><![CDATA[${payer}]]></payer_username>\n</wcpayinfo>\n</appmsg>\n</msg>`;
  return { content, msgSource: '', text: '微信转账', fields: { title: '微信转账', description: des, feedesc, paysubtype: '1' } };
}

export function buildRedPacket(ctx: BuildContext): BuiltContent {
  const { rng } = ctx;
  const sendid = rng.digits(28);
  const wish = rng.pick(['恭喜发财，大吉大利', '辛苦啦', '新年快乐🧧']);
  const des = '我给你发了一个红包，赶紧去拆!';
  // <type> is wrapped in CDATA in real red packets: trim and strip before casting.
  const content = `<msg>\n\t<appmsg appid="" sdkver="">\n\t\t<des><![CDATA[${des}]]></des>\n\t\t<url><![CDATA[https://wxapp.tenpay.com/mmpayhb/wxhb_personalreceive?showwxpaytitle=1&msgtype=1&channelid=1&sendid=${sendid}&ver=6&sign=${rng.hex(64)}]]></url>\n\t\t<lowurl><![CDATA[]]></lowurl>\n\t\t<type><![CDATA[2001]]></type>\n\t\t<title><![CDATA[微信红包]]></title>\n\t\t<thumburl><![CDATA[https://wx.gtimg.com/hongbao/1800/hb.png]]></thumburl>\n\t\t<wcpayinfo>\n\t\t\t<templateid><![CDATA[7a2a165d31da7fce6dd77e05c300028a]]></templateid>\n\t\t\t<iconurl><![CDATA[https://wx.gtimg.com/hongbao/1800/hb.png]]></iconurl>\n\t\t\t<receivertitle><![CDATA[${wish}]]></receivertitle>\n\t\t\t<sendertitle><![CDATA[${wish}]]></sendertitle>\n\t\t\t<scenetext><![CDATA[微信红包]]></scenetext>\n\t\t\t<senderdes><![CDATA[查看红包]]></senderdes>\n\t\t\t<receiverdes><![CDATA[领取红包]]></receiverdes>\n\t\t\t<nativeurl><![CDATA[wxpay://c2cbizmessagehandler/hongbao/receivehongbao?msgtype=1&channelid=1&sendid=${sendid}&sendusername=${ctx.from}&ver=6&sign=${rng.hex(64)}]]></nativeurl>\n\t\t\t<sceneid><![CDATA[1002]]></sceneid>\n\t\t\t<innertype><![CDATA[0]]></innertype>\n\t\t\t<paymsgid><![CDATA[${sendid}]]></paymsgid>\n\t\t\t<locallogoicon><![CDATA[c2c_hongbao_icon_cn]]></locallogoicon>\n\t\t\t<invalidtime><![CDATA[${ctx.createTime + 86_400}]]></invalidtime>\n\t\t\t<broaden />\n\t\t</wcpayinfo>\n\t</appmsg>\n\t<fromusername><![CDATA[${ctx.from}]]></fromusername>\n</msg>`;
  return {
    content,
    msgSource: '<msgsource><pushkey /><ModifyMsgAction /></msgsource>',
    text: '微信红包',
    fields: { title: '微信红包', description: des, wish },
  };
}

export function buildUnknownAppmsg(ctx: BuildContext): BuiltContent {
  const title = '新功能消息';
  const des = UNSUPPORTED_TITLE;
  const content = `<msg><appmsg appid="" sdkver="0"><title>${title}</title><des>${des}</des><type>999</type><url>https://support.weixin.qq.com/update/</url><appattach><totallen>0</totallen></appattach></appmsg><fromusername>${ctx.from}</fromusername></msg>`;
  return { content, msgSource: '', text: title, fields: { title, description: des } };
}

// ---------------------------------------------------------------------------------------------
// System lines, sysmsg (10002), status notify (51), unknown MsgType

/** A revoke of `target`: the revoke row names the revoked message by its inner <newmsgid>. */
export function buildRevoke(ctx: BuildContext, target: Pick<ReferencedMessage, 'msgId' | 'newMsgId'>): BuiltContent {
  const replace = ctx.isSender === 1 ? '你撤回了一条消息' : `"${ctx.session.peerName}" 撤回了一条消息`;
  const content = `<sysmsg type="revokemsg"><revokemsg><session>${ctx.session.id}</session><msgid>${target.msgId}</msgid><newmsgid>${target.newMsgId}</newmsgid><replacemsg><![CDATA[${replace}]]></replacemsg></revokemsg></sysmsg>`;
  return { content, msgSource: '', text: replace, fields: { targetNewMsgId: target.newMsgId, replacemsg: replace }, status: 4 };
}

export function buildPat(ctx: BuildContext): BuiltContent {
  const template = `"\${${ctx.session.peer}}" 拍了拍我`;
  const content = `<sysmsg type="pat"><pat><fromusername>${ctx.session.peer}</fromusername><chatusername>${ctx.session.id}</chatusername><pattedusername>${ctx.session.me}</pattedusername><patsuffix><![CDATA[]]></patsuffix><patsuffixversion>0</patsuffixversion><template><![CDATA[${template}]]></template></pat></sysmsg>`;
  return { content, msgSource: '', text: template, fields: { template, fromUser: ctx.session.peer, pattedUser: ctx.session.me }, status: 4 };
}

const SYSTEM_LINES = [
  '对方已开启"仅接收视频号私信"',
  '你已添加了小林，现在可以开始聊天了。',
  '以上是打招呼的内容',
  '对方已通过你的私信请求，现在可以开始聊天了。',
  '消息已发出，但被对方拒收了。<_wc_custom_link_ href="weixin://findermsg/setting">设置</_wc_custom_link_>',
] as const;

export function buildSystem(ctx: BuildContext): BuiltContent {
  const line = ctx.rng.pick(SYSTEM_LINES);
  return { content: line, msgSource: '', text: line, fields: NO_FIELDS, status: 4 };
}

/** A live-start functionmsg exactly as in the syncFinder seed. */
export function buildFunctionMsg(ctx: BuildContext): BuiltContent {
  const objectId = ctx.rng.uint64ObjectId();
  const functionmsgid = `FinderLiveNotificationMsg_LiveStartNotifyMsg_${objectId}_2_${objectId}_2`;
  const content = `<sysmsg type="functionmsg"><functionmsg><cgi>/cgi-bin/micromsg-bin/findergetlivetips</cgi><cmdid>6407</cmdid><functionmsgid>${functionmsgid}</functionmsgid><version>0</version><op>0</op><retryinterval>150</retryinterval><retrycount>3</retrycount><reportid>231759</reportid><successkey>101</successkey><failkey>102</failkey><finalfailkey>103</finalfailkey><custombuff>CAA=</custombuff><businessid>70001</businessid><actiontime>0</actiontime><delaytime>0</delaytime></functionmsg></sysmsg>`;
  return { content, msgSource: '', text: '', fields: { functionmsgid, objectId } };
}

export function buildFinderLiveClose(ctx: BuildContext): BuiltContent {
  const { rng } = ctx;
  const objectId = rng.uint64ObjectId();
  const liveId = `20${rng.digits(17)}`;
  const content = `<sysmsg type="finderliveclosenotifymsg"><finderliveclosenotifymsg><live_id>${liveId}</live_id><object_id>${objectId}</object_id><revoke_id>${objectId}_13_18</revoke_id><tips_id>${objectId}_13_18</tips_id><functionmsgid>FinderLiveNotificationMsg_${objectId}_11_${objectId}_11</functionmsgid></finderliveclosenotifymsg></sysmsg>`;
  return { content, msgSource: '', text: '', fields: { liveId, objectId } };
}

/** MsgType 51 multi-device signal: JSON inside XML, not user content. */
export function buildStatusNotify(ctx: BuildContext, lastNewMsgId: string, lastCreateTime: number): BuiltContent {
  const content = `<msg>\n<op id='5'>\n<name>lastMessage</name>\n<arg>{"messageSvrId":"${lastNewMsgId}","MsgCreateTime":"${lastCreateTime}"}</arg>\n</op>\n</msg>`;
  return { content, msgSource: '', text: '', fields: { op: '5', messageSvrId: lastNewMsgId } };
}

export function buildUnknownMsgType(ctx: BuildContext): BuiltContent {
  const content = `<sysmsg type="sysnotice"><sysnotice><id>${ctx.rng.range(1, 9999)}</id><content><![CDATA[系统通知：请升级到最新版本查看]]></content></sysnotice></sysmsg>`;
  return { content, msgSource: '', text: '', fields: NO_FIELDS };
}
