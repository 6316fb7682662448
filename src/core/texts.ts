/**
 * Every text the gateway writes by itself — to customers (acknowledgement, satisfaction request)
 * and to the lead (SLA alerts, low ratings, undeliverable escalations) — in one place, per
 * language (`router.language`), each overridable in `router.texts`. Placeholders are checked at
 * load, so a misspelt `{tiket}` is a config error instead of a literal in a customer's chat.
 */
import { offsetText, utcOffsetMinutes } from './zone-offset.js';
import { z } from 'zod';
import { clockText, type BusinessHours } from './config-calendar.js';

export const LANGUAGES = ['ru', 'en'] as const;
export type Language = (typeof LANGUAGES)[number];

/** Each text and the placeholders it may use. */
export const TEXT_PLACEHOLDERS = {
  autoAcknowledge: ['ticket', 'name', 'hours', 'next'],
  satisfactionRequest: ['ticket', 'name'],
  slaFirstResponse: ['ticket', 'limit', 'contact', 'channel'],
  slaNoAnswer: ['ticket', 'limit', 'contact', 'channel'],
  lowRating: ['ticket', 'rating', 'contact', 'channel'],
  mailTicketLine: ['ticket'],
} as const;
export type TextName = keyof typeof TEXT_PLACEHOLDERS;

/**
 * The acknowledgement has four defaults: open now (answer soon), closed (when the team is next at
 * work), 24/7, and `autoAcknowledge` itself, the plain hours, for a calendar that never opens again
 * within a year. A configured override replaces all four; `{next}` lets it say the same things.
 */
type AckDefaults = { autoAcknowledge24x7: string; autoAcknowledgeOpen: string; autoAcknowledgeClosed: string };

const DEFAULTS: Record<Language, Record<TextName, string> & AckDefaults> = {
  ru: {
    autoAcknowledge: 'Здравствуйте! Мы получили ваше обращение, его номер {ticket}. Ответим в рабочее время: {hours}.',
    autoAcknowledgeOpen: 'Здравствуйте! Мы получили ваше обращение, его номер {ticket}. Ответим в ближайшее время (часы работы: {hours}).',
    autoAcknowledgeClosed: 'Здравствуйте! Мы получили ваше обращение, его номер {ticket}. Сейчас нерабочее время, ответим {next}.',
    autoAcknowledge24x7: 'Здравствуйте! Мы получили ваше обращение, его номер {ticket}. Скоро ответим.',
    satisfactionRequest: 'Здравствуйте! Оцените, пожалуйста, нашу помощь по обращению {ticket}: ответьте одной цифрой от 1 до 5.',
    slaFirstResponse: '⚠️ SLA {ticket}: нет первого ответа дольше {limit} ({contact}, {channel}).',
    slaNoAnswer: '⚠️ SLA {ticket}: клиент ждёт ответа дольше {limit} ({contact}, {channel}).',
    lowRating: '⭐ Низкая оценка {rating}/5 по {ticket} ({contact}, {channel}).',
    mailTicketLine: 'Номер обращения: {ticket}',
  },
  en: {
    autoAcknowledge: 'Hello! We have received your request, its number is {ticket}. We answer during business hours: {hours}.',
    autoAcknowledgeOpen: 'Hello! We have received your request, its number is {ticket}. We will answer shortly (business hours: {hours}).',
    autoAcknowledgeClosed: 'Hello! We have received your request, its number is {ticket}. We are closed now and will answer {next}.',
    autoAcknowledge24x7: 'Hello! We have received your request, its number is {ticket}. We will answer shortly.',
    satisfactionRequest: 'Hello! Please rate our help with request {ticket}: reply with a single digit from 1 to 5.',
    slaFirstResponse: '⚠️ SLA {ticket}: no first response for more than {limit} ({contact}, {channel}).',
    slaNoAnswer: '⚠️ SLA {ticket}: the customer has waited for an answer for more than {limit} ({contact}, {channel}).',
    lowRating: '⭐ Low rating {rating}/5 for {ticket} ({contact}, {channel}).',
    mailTicketLine: 'Request number: {ticket}',
  },
};

/** A template for one text: only its own placeholders. */
export function TextTemplate(name: TextName) {
  const allowed: readonly string[] = TEXT_PLACEHOLDERS[name];
  return z
    .string()
    .min(1)
    .superRefine((s, ctx) => {
      for (const [, p] of s.matchAll(/\{([^{}]*)\}/g)) {
        if (!allowed.includes(p!)) ctx.addIssue({ code: 'custom', message: `unknown placeholder {${p}}; this text may use ${allowed.map((a) => `{${a}}`).join(', ')}` });
      }
    });
}

export const TextOverrides = z.object(
  Object.fromEntries((Object.keys(TEXT_PLACEHOLDERS) as TextName[]).map((n) => [n, TextTemplate(n).optional()])) as {
    [K in TextName]: z.ZodOptional<ReturnType<typeof TextTemplate>>;
  },
);
export type TextOverrides = z.infer<typeof TextOverrides>;

/** Whether business hours are on at an instant, else when they next begin (null: not within a year). */
export type Opening = { open: true } | { open: false; at: number | null };

export class Texts {
  constructor(
    readonly language: Language,
    private readonly overrides: Partial<Record<TextName, string>>,
    /** The calendar the acknowledgement promises (the SLA's business hours); null: 24/7. */
    private readonly hours: BusinessHours | null,
    /**
     * The calendar walk of router/business-hours.ts (`nextOpening`), handed in because core does
     * not import the router; without it the acknowledgement names the hours only, whatever the time.
     */
    private readonly openingAt: ((at: number, hours: BusinessHours) => Opening) | null = null,
  ) {}

  /** `now`: the instant the text is sent, which decides whether the acknowledgement says «сейчас нерабочее время». */
  render(name: TextName, vars: Partial<Record<string, string | number>>, now = Date.now()): string {
    const d = DEFAULTS[this.language];
    let template = this.overrides[name];
    const all: Record<string, string | number | undefined> = { hours: describeHours(this.hours, this.language), ...vars };
    if (name === 'autoAcknowledge') {
      const opening: Opening = !this.hours ? { open: true } : this.openingAt ? this.openingAt(now, this.hours) : { open: false, at: null };
      all.next = opening.open ? SOON[this.language] : opening.at === null ? undefined : describeOpening(opening.at, now, this.hours!, this.language);
      template ??= !this.hours ? d.autoAcknowledge24x7 : opening.open ? d.autoAcknowledgeOpen : all.next !== undefined ? d.autoAcknowledgeClosed : d.autoAcknowledge;
      // A custom text naming {next} on a calendar that never opens again falls back to the hours.
      all.next ??= `${this.language === 'ru' ? 'в рабочее время' : 'during business hours'}: ${all.hours}`;
    }
    template ??= d[name];
    return template.replace(/\{([^{}]*)\}/g, (m, p: string) => (all[p] === undefined ? m : String(all[p])));
  }

  duration(ms: number): string {
    return humanDuration(ms, this.language);
  }
}

const UNITS: Record<Language, Array<[number, string]>> = {
  ru: [[86_400_000, 'д'], [3_600_000, 'ч'], [60_000, 'мин'], [1000, 'с']],
  en: [[86_400_000, 'd'], [3_600_000, 'h'], [60_000, 'min'], [1000, 's']],
};

/** «2 мин», «1 ч 30 мин», «2 д 4 ч» / "1 h 30 min": the two largest units, the rest dropped. */
export function humanDuration(ms: number, language: Language): string {
  let rest = Math.max(0, Math.round(ms / 1000) * 1000);
  const parts: string[] = [];
  for (const [size, unit] of UNITS[language]) {
    if (parts.length === 2) break;
    const n = Math.floor(rest / size);
    if (n > 0) parts.push(`${n} ${unit}`);
    else if (parts.length) break; // «1 ч 5 с» would read as a typo: stop at the first gap
    rest -= n * size;
  }
  return parts.join(' ') || `0 ${UNITS[language][3]![1]}`;
}

const DAY_NAMES: Record<Language, string[]> = {
  ru: ['пн', 'вт', 'ср', 'чт', 'пт', 'сб', 'вс'],
  en: ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'],
};

/** «пн–пт, 9:00–13:00, 14:00–18:00 по Москве» / "Mon–Fri, 9:00–18:00 Moscow time"; null: «круглосуточно» / "24/7". */
export function describeHours(hours: BusinessHours | null, language: Language): string {
  if (!hours) return language === 'ru' ? 'круглосуточно' : '24/7';
  const names = DAY_NAMES[language];
  const runs: string[] = [];
  const days = [...hours.days].sort((a, b) => a - b);
  for (let i = 0; i < days.length; ) {
    let j = i;
    while (j + 1 < days.length && days[j + 1] === days[j]! + 1) j++;
    runs.push(j - i >= 2 ? `${names[days[i]! - 1]}–${names[days[j]! - 1]}` : days.slice(i, j + 1).map((d) => names[d - 1]).join(', '));
    i = j + 1;
  }
  const intervals = hours.intervals.map((iv) => `${clockText(iv.from)}–${clockText(iv.to)}`).join(', ');
  return `${runs.join(', ')}, ${intervals} ${zoneText(hours.timezone, language)}`;
}

/** {next} while the team is at work (or around the clock). */
const SOON: Record<Language, string> = { ru: 'в ближайшее время', en: 'shortly' };

const RU_ON_DAY = ['в понедельник', 'во вторник', 'в среду', 'в четверг', 'в пятницу', 'в субботу', 'в воскресенье'];
const EN_DAYS = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'];
const RU_MONTHS = ['января', 'февраля', 'марта', 'апреля', 'мая', 'июня', 'июля', 'августа', 'сентября', 'октября', 'ноября', 'декабря'];
const EN_MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];

/**
 * When the team is next at work, in the calendar's zone: «сегодня после 9:00 по Москве», «в
 * понедельник, 12 января, после 9:00 по Москве» / "on Monday, 12 January, after 9:00 Moscow time".
 * Any other day gets its date, since a weekday alone is ambiguous across the New Year holidays.
 */
export function describeOpening(at: number, now: number, hours: BusinessHours, language: Language): string {
  const local = (instant: number) => {
    const p = Object.fromEntries(
      new Intl.DateTimeFormat('en-GB', { timeZone: hours.timezone, year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: '2-digit', hourCycle: 'h23' })
        .formatToParts(new Date(instant))
        .map((x) => [x.type, x.value]),
    );
    return { year: Number(p.year), month: Number(p.month), day: Number(p.day), minutes: Number(p.hour) * 60 + Number(p.minute) };
  };
  const o = local(at);
  const n = local(now);
  const time = clockText(o.minutes);
  const zone = zoneText(hours.timezone, language, new Date(at));
  if (o.year === n.year && o.month === n.month && o.day === n.day) return language === 'ru' ? `сегодня после ${time} ${zone}` : `today after ${time} ${zone}`;
  const weekday = (new Date(Date.UTC(o.year, o.month - 1, o.day)).getUTCDay() + 6) % 7;
  return language === 'ru'
    ? `${RU_ON_DAY[weekday]}, ${o.day} ${RU_MONTHS[o.month - 1]}, после ${time} ${zone}`
    : `on ${EN_DAYS[weekday]}, ${o.day} ${EN_MONTHS[o.month - 1]}, after ${time} ${zone}`;
}

/** «по Москве» after the dative of Russia's zone cities; the zone's own name means nothing to a customer. */
const RU_ZONE_CITIES: Record<string, string> = {
  'Europe/Kaliningrad': 'Калининграду', 'Europe/Moscow': 'Москве', 'Europe/Simferopol': 'Симферополю', 'Europe/Kirov': 'Кирову',
  'Europe/Volgograd': 'Волгограду', 'Europe/Astrakhan': 'Астрахани', 'Europe/Saratov': 'Саратову', 'Europe/Ulyanovsk': 'Ульяновску',
  'Europe/Samara': 'Самаре', 'Asia/Yekaterinburg': 'Екатеринбургу', 'Asia/Omsk': 'Омску', 'Asia/Novosibirsk': 'Новосибирску',
  'Asia/Barnaul': 'Барнаулу', 'Asia/Tomsk': 'Томску', 'Asia/Novokuznetsk': 'Новокузнецку', 'Asia/Krasnoyarsk': 'Красноярску',
  'Asia/Irkutsk': 'Иркутску', 'Asia/Chita': 'Чите', 'Asia/Yakutsk': 'Якутску', 'Asia/Khandyga': 'Хандыге',
  'Asia/Vladivostok': 'Владивостоку', 'Asia/Ust-Nera': 'Усть-Нере', 'Asia/Magadan': 'Магадану', 'Asia/Sakhalin': 'Южно-Сахалинску',
  'Asia/Srednekolymsk': 'Среднеколымску', 'Asia/Kamchatka': 'Петропавловску-Камчатскому', 'Asia/Anadyr': 'Анадырю',
};

/** "+2", "−1" from Moscow: the МСК±N every Russian reader knows from timetables. */
function fromMoscowText(minutes: number): string {
  const abs = Math.abs(minutes);
  const text = abs % 60 === 0 ? String(abs / 60) : `${Math.floor(abs / 60)}:${String(abs % 60).padStart(2, '0')}`;
  return `${minutes < 0 ? '\u2212' : '+'}${text}`;
}

/**
 * How a customer reads the calendar's zone: «по Москве», «по Екатеринбургу (МСК+2)», "Moscow time",
 * "Yekaterinburg time (UTC+05:00)"; a zone outside Russia by its city and UTC offset. The offset is
 * today's: the text is built as a message is sent.
 */
function zoneText(timezone: string, language: Language, at = new Date()): string {
  const offset = utcOffsetMinutes(timezone, at);
  if (language === 'ru') {
    const city = RU_ZONE_CITIES[timezone];
    const fromMoscow = offset - utcOffsetMinutes('Europe/Moscow', at);
    if (city) return fromMoscow === 0 ? `по ${city}` : `по ${city} (МСК${fromMoscowText(fromMoscow)})`;
    return `(${timezone}, ${offsetText(offset)})`;
  }
  if (timezone === 'Europe/Moscow') return 'Moscow time';
  const city = timezone.slice(timezone.lastIndexOf('/') + 1).replace(/_/g, ' ');
  const named = timezone.includes('/') && !timezone.startsWith('Etc/') && /^[A-Za-z][A-Za-z -]*$/.test(city);
  return named ? `${city} time (${offsetText(offset)})` : `(${timezone}, ${offsetText(offset)})`;
}
