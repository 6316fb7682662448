/**
 * Bulk history for the read model: N tickets with five messages each, written straight into SQL
 * with INSERT … SELECT generate_series (minutes, not the hours that routing a million tickets
 * through the gateway would take on this machine). The rows are the ones the projection
 * (src/read-model/apply.ts) writes for this log per ticket, in stream order:
 *
 *   +1 inbound · +2 outbound (agent reply) · +3 delivery sent · +4 delivered · +5 inbound ·
 *   +6 outbound · +7 sent · +8 delivered · +9 inbound ("thank you") · +10 status resolved ·
 *   +11 status closed
 *
 * so the checkpoint ends at N × 11 and every sequence is one the log would have held. Contact ids
 * are computed as contactIdFor does (sha256, base64url, 20 characters). Texts are Russian
 * sentences built from word lists, with order numbers and surnames, so to_tsvector('russian') has
 * a real vocabulary: common words (thousands of matches), rare ones (a few).
 *
 * Secondary indexes and constraints are dropped first and built once at the end (what a restore
 * does): maintaining a GIN index row by row would take many times longer.
 */
import type { Queryable } from '../../src/read-model/database.js';

export const ENTRIES_PER_TICKET = 11;
export const MESSAGES_PER_TICKET = 5;

export interface HistoryShape {
  tickets: number;
  /** Ticket ids are prefix + number, numbers from firstNumber on (as the router's default config). */
  prefix: string;
  firstNumber: number;
  /** Tickets per contact (a contact comes back). */
  ticketsPerContact: number;
  /** The newest tickets of the history are still open (the rest resolved, then closed). */
  openTickets: number;
  maintenanceWorkMem?: string;
}

export interface Loaded {
  lastSeq: number;
  contacts: number;
  /** A phone of a WhatsApp contact, for GET /v1/contacts?phone= and the contact filter. */
  samplePhones: string[];
  steps: Array<{ step: string; ms: number }>;
}

const lit = (words: string[]) => `ARRAY[${words.map((w) => `'${w.replace(/'/g, "''")}'`).join(',')}]`;

const FIRST = ['Анна', 'Иван', 'Мария', 'Сергей', 'Ольга', 'Дмитрий', 'Елена', 'Алексей', 'Наталья', 'Андрей', 'Татьяна', 'Михаил', 'Юлия', 'Николай', 'Ирина', 'Павел', 'Светлана', 'Артём', 'Ксения', 'Владимир'];
const LAST = ['Иванов', 'Смирнов', 'Кузнецов', 'Попов', 'Васильев', 'Петров', 'Соколов', 'Михайлов', 'Новиков', 'Фёдоров', 'Морозов', 'Волков', 'Алексеев', 'Лебедев', 'Семёнов', 'Егоров', 'Павлов', 'Козлов', 'Степанов', 'Николаев', 'Орлов', 'Андреев', 'Макаров', 'Никитин', 'Захаров', 'Зайцев', 'Соловьёв', 'Борисов', 'Яковлев', 'Григорьев'];
const GREETING = ['Здравствуйте!', 'Добрый день.', 'Привет.', 'Добрый вечер!', 'Доброе утро.', 'Подскажите, пожалуйста.'];
const PROBLEM = [
  'Не проходит оплата по карте', 'Не пришёл код подтверждения', 'Хочу оформить возврат товара', 'Заказ до сих пор не доставлен',
  'Курьер не приехал в назначенное время', 'Списали деньги дважды', 'Не могу войти в личный кабинет', 'Пришёл не тот размер',
  'Товар пришёл повреждённым', 'Как изменить адрес доставки', 'Не начислились бонусные баллы', 'Промокод не применяется',
  'Приложение закрывается при запуске', 'Нужен закрывающий документ для бухгалтерии', 'Хочу отменить подписку', 'Где посмотреть статус заказа',
  'Не работает уведомление о доставке', 'Продлите, пожалуйста, срок хранения в пункте выдачи', 'Неверно указана цена в чеке', 'Перепутали комплектацию',
  'Нет чека в письме', 'Можно ли оплатить при получении', 'Заблокировали аккаунт без объяснения', 'Нужна консультация по гарантии',
  'Сломалась кофемашина через неделю', 'Не открывается ссылка на оплату', 'Поменяйте, пожалуйста, получателя', 'Когда вернут деньги за отмену',
  'Оператор не перезвонил', 'Верните предоплату',
];
const PRODUCT = ['кофемашина', 'пылесос', 'смартфон', 'наушники', 'куртка', 'кроссовки', 'холодильник', 'чайник', 'ноутбук', 'велосипед', 'диван', 'матрас', 'телевизор', 'утюг', 'блендер', 'фен', 'самокат', 'рюкзак', 'монитор', 'принтер', 'плед', 'сковорода', 'часы', 'колонка', 'планшет', 'роутер', 'стул', 'лампа', 'кресло', 'палатка'];
const CITY = ['Москва', 'Санкт-Петербург', 'Казань', 'Новосибирск', 'Екатеринбург', 'Нижний Новгород', 'Самара', 'Омск', 'Ростов-на-Дону', 'Уфа', 'Красноярск', 'Воронеж', 'Пермь', 'Волгоград', 'Краснодар', 'Тюмень', 'Иркутск', 'Хабаровск', 'Ярославль', 'Владивосток'];
const DETAIL = ['Уже второй раз пишу.', 'Срочно, пожалуйста.', 'Жду ответа с утра.', 'Скриншот прикладываю.', 'Звонил на горячую линию, не дозвонился.', 'Спасибо заранее.', 'Очень неудобно.', 'Раньше такого не было.', 'Помогите разобраться.', 'Можно ответить сюда?'];
const AGENT = [
  'Здравствуйте! Проверили ваш заказ, передали вопрос в службу доставки.', 'Добрый день! Деньги вернутся на карту в течение трёх рабочих дней.',
  'Извините за неудобства. Оформили возврат, курьер заберёт товар завтра.', 'Мы начислили бонусные баллы вручную, они уже на счёте.',
  'Код отправлен повторно, проверьте, пожалуйста, папку «Спам».', 'Срок хранения продлили на пять дней.',
  'Закрывающие документы отправили на вашу почту.', 'Подписка отменена, списаний больше не будет.',
  'Передали обращение в сервисный центр, с вами свяжутся.', 'Адрес доставки изменён, курьер предупреждён.',
];
const THANKS = ['Спасибо, всё получилось!', 'Благодарю за помощь.', 'Отлично, спасибо.', 'Понял, жду.', 'Спасибо большое, вопрос решён.'];
const AGENTS = ['Оксана', 'Роман', 'Виктория', 'Глеб', 'Полина', 'Тимур', 'Дарья', 'Кирилл'];

/** Channel of contact k: half Telegram, 30 % WhatsApp, 15 % email, 5 % Slack. */
const CHANNEL_OF = (k: string) => `CASE WHEN ${k} % 20 < 10 THEN 'telegram' WHEN ${k} % 20 < 16 THEN 'whatsapp' WHEN ${k} % 20 < 19 THEN 'email' ELSE 'slack' END`;

export async function loadHistory(db: Queryable & { transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> }, s: HistoryShape, say: (line: string) => void): Promise<Loaded> {
  const N = s.tickets;
  const C = Math.max(1, Math.floor(N / s.ticketsPerContact));
  const K = ENTRIES_PER_TICKET;
  const steps: Loaded['steps'] = [];
  await db.transaction(async (tx) => {
    const step = async (name: string, sql: string) => {
      const t0 = performance.now();
      await tx.query(sql);
      const ms = Math.round(performance.now() - t0);
      steps.push({ step: name, ms });
      if (ms > 2000) say(`  history load: ${name} ${(ms / 1000).toFixed(1)} s`);
    };
    // Index builds sort in memory; PGlite's WebAssembly heap is smaller than a server's.
    await tx.query(`SET LOCAL maintenance_work_mem = '${s.maintenanceWorkMem ?? '512MB'}'`);
    await tx.query(`SET LOCAL synchronous_commit = off`);
    const saved = await dropIndexesAndConstraints(tx);

    // Contacts and their identities (one proven identity each, as a first message leaves).
    await step('contacts (temp)', `
      CREATE TEMP TABLE hc ON COMMIT DROP AS
      SELECT k, ch, kind, scope, value, sender_id, handles, name,
             'c_' || substr(translate(encode(sha256(convert_to(kind || E'\\n' || scope || E'\\n' || value, 'UTF8')), 'base64'), '+/', '-_'), 1, 20) AS id
        FROM (SELECT k, ch,
                CASE ch WHEN 'telegram' THEN 'telegram_user' WHEN 'whatsapp' THEN 'phone' WHEN 'email' THEN 'email' ELSE 'slack_user' END AS kind,
                CASE ch WHEN 'slack' THEN 'main' ELSE '' END AS scope,
                CASE ch WHEN 'telegram' THEN (100000000 + k)::text WHEN 'whatsapp' THEN '+7' || (9160000000 + k)::text
                        WHEN 'email' THEN 'client' || k || '@example.ru' ELSE 'U' || lpad(k::text, 9, '0') END AS value,
                CASE ch WHEN 'telegram' THEN (100000000 + k)::text WHEN 'whatsapp' THEN '7' || (9160000000 + k)::text || '@s.whatsapp.net'
                        WHEN 'email' THEN 'client' || k || '@example.ru' ELSE 'U' || lpad(k::text, 9, '0') END AS sender_id,
                CASE ch WHEN 'whatsapp' THEN jsonb_build_object('phone', '+7' || (9160000000 + k)::text)
                        WHEN 'email' THEN jsonb_build_object('email', 'client' || k || '@example.ru') ELSE '{}'::jsonb END AS handles,
                (${lit(FIRST)})[1 + k % ${FIRST.length}] || ' ' || (${lit(LAST)})[1 + (k / ${FIRST.length}) % ${LAST.length}] AS name
              FROM (SELECT k, ${CHANNEL_OF('k')} AS ch FROM generate_series(1::bigint, ${C}) k) g) x`);
    await tx.query('CREATE INDEX ON hc (k)');
    // Ticket i: contact ((i-1) % C) + 1, created evenly over the last two years.
    await step('tickets (temp)', `
      CREATE TEMP TABLE ht ON COMMIT DROP AS
      SELECT i, '${s.prefix}' || (${s.firstNumber - 1} + i) AS id, ${s.firstNumber - 1} + i AS number, ((i - 1)::bigint * ${K}) AS base,
             now() - interval '730 days' + (i::float8 * ${(730 * 86400) / N}) * interval '1 second' AS t0,
             i > ${N - s.openTickets} AS open,
             ((i - 1) % ${C}) + 1 AS k
        FROM generate_series(1::bigint, ${N}) i`);
    await step('contacts', `
      INSERT INTO contacts (id, display_name, created_at, updated_at)
      SELECT hc.id, hc.name, ht.t0, last.t0 FROM hc JOIN ht ON ht.i = hc.k JOIN ht last ON last.i = hc.k + ${C} * ((${N} - hc.k) / ${C})`);
    await step('contact_identities', `
      INSERT INTO contact_identities (contact_id, kind, scope, value, channel, account, proof, created_at)
      SELECT hc.id, hc.kind, hc.scope, hc.value, hc.ch, 'main', 'sender', ht.t0 FROM hc JOIN ht ON ht.i = hc.k`);
    await step('tickets', `
      INSERT INTO tickets (id, number, status, channel, account, conversation, subject, contact_id, contact, created_at, updated_at,
                           first_response_at, resolved_at, closed_at, reopened_count, last_inbound_at, last_outbound_at, last_agent_reply_at,
                           message_count, last_delivery, last_seq)
      SELECT ht.id, ht.number, CASE WHEN ht.open THEN 'open' ELSE 'closed' END, hc.ch, 'main',
             jsonb_build_object('id', CASE hc.ch WHEN 'email' THEN hc.value WHEN 'slack' THEN 'D' || hc.k ELSE hc.sender_id END,
                                'kind', CASE hc.ch WHEN 'email' THEN 'email' ELSE 'private' END),
             CASE WHEN hc.ch = 'email' THEN (${lit(PROBLEM)})[1 + (ht.i * 7) % ${PROBLEM.length}] || ', заказ №' || (100000 + (ht.i * 7919) % 900000) END,
             hc.id, jsonb_build_object('id', hc.sender_id, 'displayName', hc.name, 'handles', hc.handles),
             ht.t0, CASE WHEN ht.open THEN ht.t0 + interval '40 minutes' ELSE ht.t0 + interval '3 days' END,
             ht.t0 + interval '10 minutes 1 second',
             CASE WHEN NOT ht.open THEN ht.t0 + interval '1 hour' END, CASE WHEN NOT ht.open THEN ht.t0 + interval '3 days' END, 0,
             ht.t0 + interval '40 minutes', ht.t0 + interval '30 minutes', ht.t0 + interval '30 minutes 1 second', 3,
             jsonb_build_object('status', 'delivered', 'outboundId', 'o' || ht.number || '-3', 'at', to_char((ht.t0 + interval '30 minutes 2 seconds') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
             ht.base + CASE WHEN ht.open THEN 9 ELSE ${K} END
        FROM ht JOIN hc ON hc.k = ht.k`);
    // Five messages per ticket; slot j → log offset (1, 2, 5, 6, 9). Inbound text: greeting,
    // problem, product, city, order number, detail; outbound: an agent's answer; the last: thanks.
    await step('messages', `
      INSERT INTO messages (seq, ticket_id, id, direction, purpose, channel, account, contact_id, author_id, author_name, platform_message_id, at, text, answered_at)
      SELECT ht.base + (ARRAY[1, 2, 5, 6, 9])[j + 1], ht.id,
             CASE WHEN j IN (1, 3) THEN 'o' ELSE 'e' END || ht.number || '-' || j,
             CASE WHEN j IN (1, 3) THEN 'outbound' ELSE 'inbound' END,
             CASE WHEN j IN (1, 3) THEN 'agent_reply' END,
             hc.ch, 'main',
             CASE WHEN j IN (1, 3) THEN NULL ELSE hc.id END,
             CASE WHEN j IN (1, 3) THEN 'agent-' || (ht.i % ${AGENTS.length}) ELSE hc.sender_id END,
             CASE WHEN j IN (1, 3) THEN (${lit(AGENTS)})[1 + ht.i % ${AGENTS.length}] ELSE hc.name END,
             CASE WHEN j IN (1, 3) THEN NULL ELSE (ht.number * 10 + j)::text END,
             ht.t0 + j * interval '10 minutes',
             CASE WHEN j = 4 THEN (${lit(THANKS)})[1 + ht.i % ${THANKS.length}]
                  WHEN j IN (1, 3) THEN (${lit(AGENT)})[1 + (ht.i * 3 + j) % ${AGENT.length}]
                  ELSE (${lit(GREETING)})[1 + (ht.i + j) % ${GREETING.length}] || ' ' || (${lit(PROBLEM)})[1 + (ht.i * 7 + j * 13) % ${PROBLEM.length}]
                       || ', ' || (${lit(PRODUCT)})[1 + (ht.i * 11 + j) % ${PRODUCT.length}] || ', город ' || (${lit(CITY)})[1 + (ht.i * 5 + j) % ${CITY.length}]
                       || ', заказ №' || (100000 + (ht.i * 7919 + j) % 900000) || '. ' || (${lit(DETAIL)})[1 + (ht.i * 17 + j) % ${DETAIL.length}]
                       || CASE WHEN j = 2 THEN ' Я ' || hc.name || ', телефон в профиле.' ELSE '' END
             END,
             CASE WHEN j IN (0, 2) THEN ht.t0 + (j + 1) * interval '10 minutes' + interval '1 second' END
        FROM ht JOIN hc ON hc.k = ht.k, generate_series(0, ${MESSAGES_PER_TICKET - 1}) j`);
    await step('deliveries', `
      INSERT INTO deliveries (outbound_id, ticket_id, channel, account, purpose, status, platform_message_id, attempts, sent_at, delivered_at, updated_at, last_seq)
      SELECT 'o' || ht.number || '-' || j, ht.id, hc.ch, 'main', 'agent_reply', 'delivered', 'p' || ht.number || '-' || j, 1,
             ht.t0 + j * interval '10 minutes' + interval '1 second', ht.t0 + j * interval '10 minutes' + interval '2 seconds',
             ht.t0 + j * interval '10 minutes' + interval '2 seconds', ht.base + CASE j WHEN 1 THEN 4 ELSE 8 END
        FROM ht JOIN hc ON hc.k = ht.k, (VALUES (1), (3)) v(j)`);
    await step('status_changes', `
      INSERT INTO status_changes (seq, ticket_id, from_status, to_status, at, author_id, reason)
      SELECT ht.base + 10, ht.id, 'open', 'resolved', ht.t0 + interval '1 hour', 'agent-' || (ht.i % ${AGENTS.length}), NULL FROM ht WHERE NOT ht.open
      UNION ALL
      SELECT ht.base + 11, ht.id, 'resolved', 'closed', ht.t0 + interval '3 days', 'omnigate', 'auto-close' FROM ht WHERE NOT ht.open`);
    await step('checkpoint', `
      INSERT INTO projection_checkpoint (name, seq, updated_at) VALUES ('ticket-log', ${N * K}, now())
      ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated_at = now()`);
    for (const [name, sql] of saved) await step(name, sql);
  });
  // What autovacuum does soon after a real history's inserts: statistics and the visibility map
  // (index-only scans). Outside the transaction: VACUUM refuses to run inside one.
  const t0 = performance.now();
  await db.query('VACUUM ANALYZE');
  steps.push({ step: 'vacuum analyze', ms: Math.round(performance.now() - t0) });
  const samplePhones = [];
  for (let k = 1; samplePhones.length < 20 && k <= C; k += Math.max(1, Math.floor(C / 400))) if (k % 20 >= 10 && k % 20 < 16) samplePhones.push(`+7${9160000000 + k}`);
  return { lastSeq: N * K, contacts: C, samplePhones, steps };
}

/**
 * Drops the secondary indexes and the constraints of the loaded tables, foreign keys first;
 * returns the statements that recreate them (keys, then indexes, then foreign keys).
 */
async function dropIndexesAndConstraints(tx: Queryable): Promise<Array<[string, string]>> {
  const tables = ['contacts', 'contact_identities', 'tickets', 'messages', 'deliveries', 'status_changes'];
  const constraints = await tx.query<{ table: string; name: string; def: string; type: string }>(
    `SELECT c.conrelid::regclass::text AS table, c.conname AS name, pg_get_constraintdef(c.oid) AS def, c.contype AS type
       FROM pg_constraint c WHERE c.contype IN ('p', 'u', 'f') AND c.connamespace = 'public'::regnamespace
        AND (c.conrelid::regclass::text = ANY($1::text[]) OR c.confrelid::regclass::text = ANY($1::text[]))`,
    [tables],
  );
  const indexes = await tx.query<{ name: string; def: string }>(
    `SELECT i.indexname AS name, i.indexdef AS def FROM pg_indexes i
      WHERE i.schemaname = 'public' AND i.tablename = ANY($1::text[])
        AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname AND c.connamespace = 'public'::regnamespace)`,
    [tables],
  );
  const fks = constraints.filter((c) => c.type === 'f');
  const keys = constraints.filter((c) => c.type !== 'f');
  for (const c of [...fks, ...keys]) await tx.query(`ALTER TABLE ${c.table} DROP CONSTRAINT ${c.name}`);
  for (const i of indexes) await tx.query(`DROP INDEX ${i.name}`);
  return [
    ...keys.map((c): [string, string] => [`key ${c.name}`, `ALTER TABLE ${c.table} ADD CONSTRAINT ${c.name} ${c.def}`]),
    ...indexes.map((i): [string, string] => [`index ${i.name}`, i.def]),
    ...fks.map((c): [string, string] => [`fk ${c.name}`, `ALTER TABLE ${c.table} ADD CONSTRAINT ${c.name} ${c.def}`]),
  ];
}
