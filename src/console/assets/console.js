// omnigate console: one small module, no framework. Every URL is relative to the page
// (…/console/), so the console works behind a reverse proxy's path prefix. All data is put into
// the page with textContent (never as HTML): tickets carry customer text.
import { LABELS, TEXTS, initialLanguage, label, refusalText, sourceClass } from './i18n.js';

const API = new URL('../', document.baseURI);
const state = { token: sessionStorage.getItem('omnigate.token') || '', session: null, lang: 'en', leave: null, health: undefined, renderFor: undefined };

// ---------- small helpers ----------

function t(key, vars = {}) {
  const s = TEXTS[state.lang][key] ?? TEXTS.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (vars[k] === undefined || vars[k] === null ? '' : String(vars[k])));
}

/** t() whose variables may be elements (a value with its code): the template around them stays text. */
function tn(key, vars) {
  return (TEXTS[state.lang][key] ?? TEXTS.en[key] ?? key).split(/\{(\w+)\}/).map((p, i) => (i % 2 ? vars[p] ?? '' : p));
}

/**
 * A machine value the server sent (a status, a state) in the page's language, its code in the
 * title. `shown`: the code also beside it, for values operators look up in logs, metrics and docs.
 */
function lbl(kind, code, shown, cls = 'label') {
  const text = label(state.lang, kind, code);
  return [h('span', { class: cls, title: code, 'data-code': code }, text), shown && text !== code ? h('code', { class: 'raw' }, code) : null];
}

/** A connector state as a coloured badge, its code beside it. */
function stateBadge(s) {
  const [badge, raw] = lbl('state', s || '?', true, `state ${s}`);
  if (s) badge.dataset.state = s;
  return [badge, raw];
}

/** h('td', { class: 'x' }, 'text', child…): an element with attributes and children (text is text). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : visibleText(String(c)));
  return el;
}

// Bidi embeddings, overrides and isolates in customer text (a name or subject with U+202E shows
// "gnp.exe" as "exe.png"): shown as what they are, so no text can make itself read otherwise.
const BIDI_CONTROL = /[\u202a-\u202e\u2066-\u2069]/;
function visibleText(s) {
  return BIDI_CONTROL.test(s) ? s.replace(/[\u202a-\u202e\u2066-\u2069]/g, (c) => `[U+${c.charCodeAt(0).toString(16).toUpperCase()}]`) : s;
}

/** A search snippet (HTML: <b> around matches, the text escaped) as the plain text it stands for. */
const SNIPPET_ENTITIES = { '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#39;': "'", '&amp;': '&' };
function plainSnippet(html) {
  return String(html || '').replace(/<\/?b>/g, '').replace(/&(?:lt|gt|quot|#39|amp);/g, (e) => SNIPPET_ENTITIES[e]);
}

function time(iso) {
  if (!iso) return t('never');
  const d = new Date(iso);
  return h('time', { datetime: iso, title: iso }, d.toLocaleString(state.lang === 'ru' ? 'ru-RU' : 'en-GB'));
}

class ApiError extends Error {
  constructor(status, body, headers) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
    this.field = body?.error?.field;
    const retryAfter = Number(headers?.get('retry-after'));
    this.retryAfterS = Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : undefined;
  }
}

/** What to tell the user about a failure: a refusal in the page's language (the server writes English). */
function errorText(err) {
  if (!(err instanceof ApiError)) return err?.message ?? String(err);
  return refusalText(state.lang, { status: err.status, code: err.code, message: err.message, field: err.field, retryAfterS: err.retryAfterS });
}

async function api(path, opts = {}) {
  const res = await fetch(new URL(path, API), {
    ...opts,
    headers: { authorization: `Bearer ${state.token}`, ...(opts.headers || {}) },
  });
  if (res.status === 401) {
    // Signed in until now: the token was revoked or expired, say so on the sign-in screen.
    signOut(state.session ? t('signin.expired') : undefined);
    throw new ApiError(401, await res.json().catch(() => null), res.headers);
  }
  if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null), res.headers);
  return res.headers.get('content-type')?.includes('json') ? res.json() : res;
}

function toast(text) {
  const el = document.getElementById('toast');
  el.textContent = text;
  el.classList.add('show');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.remove('show'), 4000);
}

/**
 * Replaces the main area with a screen whose heading gets focus (screen readers announce it). A
 * screen whose answer came after the user had moved on renders nowhere: a slow failing ticket
 * screen overwrote the channels screen opened meanwhile.
 */
function screen(title, ...content) {
  if (state.renderFor !== undefined && state.renderFor !== location.hash) return document.createElement('div');
  const main = document.getElementById('main');
  document.getElementById('toast').classList.remove('show');
  const heading = h('h1', { tabindex: '-1', id: 'screen-title' }, title);
  // Optional parts are passed as null when absent (the ticket's failed replies), as h() takes
  // them; replaceChildren would write them as the text "null".
  main.replaceChildren(heading, ...content.filter((c) => c !== undefined && c !== null && c !== false));
  document.title = `${title} · omnigate`;
  heading.focus();
  return main;
}

function errorBox(err) {
  return h('p', { class: 'error', role: 'alert' }, t('error.generic', { message: errorText(err) }));
}

const canAct = () => state.session && !state.session.readOnly;

// ---------- language ----------

function applyLanguage() {
  document.documentElement.lang = state.lang;
  document.getElementById('lang').value = state.lang;
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  document.getElementById('nav').setAttribute('aria-label', state.lang === 'ru' ? 'Разделы' : 'Main');
  showWho();
}

function showWho() {
  const s = state.session;
  document.getElementById('who').textContent = s ? t(s.readOnly ? 'who.ro' : 'who.rw', { name: s.token }) : '';
}

// ---------- sign-in ----------

function signOut(message) {
  state.token = '';
  state.session = null;
  sessionStorage.removeItem('omnigate.token');
  document.getElementById('nav').hidden = true;
  document.getElementById('signout').hidden = true;
  clearInterval(state.health);
  showOutage(null);
  showWho();
  renderSignIn(message);
}

// ---------- outage banner ----------

/**
 * While signed in, /readyz every few seconds: with NATS away every screen is stale (the channel
 * list, the live tail) and actions fail, which a screen alone does not show.
 */
function watchHealth() {
  clearInterval(state.health);
  const check = async () => {
    let res;
    try {
      // With the token: without one /readyz gives only its status and short reasons (http.probeDetails).
      res = await fetch(new URL('readyz', API), { headers: { authorization: `Bearer ${state.token}` } });
    } catch {
      return showOutage(t('outage.gateway'));
    }
    // A proxy's own answer for a gateway it cannot reach; anything else that is not our JSON
    // (a proxy that publishes only /console and /v1) says nothing about an outage.
    if (res.status === 502 || res.status === 504) return showOutage(t('outage.gateway'));
    const body = await res.json().catch(() => null);
    const natsAway = body?.nats ? body.nats.connected === false : body?.reasons?.includes('NATS not connected');
    showOutage(natsAway ? t('outage.nats') : null);
  };
  state.health = setInterval(check, 5000);
  return check();
}

function showOutage(text) {
  const el = document.getElementById('outage');
  el.hidden = !text;
  el.textContent = text || '';
}

function renderSignIn(message) {
  leaveScreen();
  state.renderFor = undefined; // the sign-in screen belongs to no route
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'current-password', required: true, 'aria-describedby': 'token-help' });
  const form = h('form', { class: 'card signin', 'aria-labelledby': 'screen-title' },
    h('label', { for: 'token' }, t('signin.token'), input),
    h('p', { id: 'token-help', class: 'muted' }, t('signin.help')),
    message ? h('p', { class: 'error', role: 'alert' }, message) : null,
    h('button', { type: 'submit' }, t('signin.submit')),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    state.token = input.value.trim();
    try {
      await startSession();
    } catch (err) {
      state.token = '';
      // Only a 401 means the token is wrong; anything else (the gateway unreachable) is not the user's typo.
      renderSignIn(err?.status === 401 ? t('signin.invalid') : t('error.generic', { message: errorText(err) }));
    }
  });
  screen(t('signin.title'), form);
  input.focus();
}

async function startSession() {
  state.session = await api('v1/session');
  sessionStorage.setItem('omnigate.token', state.token);
  document.getElementById('nav').hidden = false;
  document.getElementById('signout').hidden = false;
  showWho();
  void watchHealth();
  if (!location.hash || location.hash === '#/') location.hash = '#/channels';
  else route();
}

// ---------- routing ----------

function leaveScreen() {
  if (state.leave) state.leave();
  state.leave = null;
}

/** Polls `fn` every `ms` until the screen is left. */
function every(ms, fn) {
  let stopped = false;
  let timer;
  let first = true;
  const tick = async () => {
    if (stopped) return;
    try {
      await fn();
    } catch (err) {
      // The first failure is the screen's to show; later ones (a restart, a blip) only a toast.
      if (first) throw err;
      if (err.status !== 401) toast(t('error.generic', { message: errorText(err) }));
    } finally {
      first = false;
      if (!stopped && state.token) timer = setTimeout(tick, ms);
    }
  };
  state.leave = () => {
    stopped = true;
    clearTimeout(timer);
  };
  return tick();
}

function route() {
  if (!state.session) return renderSignIn();
  leaveScreen();
  const [path, query] = location.hash.slice(1).split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || '');
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.getAttribute('href') === `#/${parts[0]}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const screens = {
    channels: () => channelsScreen(),
    pairing: () => pairingScreen(parts[1]),
    'dead-letters': () => (parts[1] ? letterScreen(Number(parts[1])) : deadLettersScreen(params)),
    tickets: () => ticketsScreen(params),
    ticket: () => ticketScreen(parts[1]),
    live: () => liveScreen(),
  };
  // What was on screen goes at once: a screen waiting on a slow answer (NATS away) showed the
  // previous one for seconds, and its error landed under the old content.
  document.getElementById('main').replaceChildren(h('p', { class: 'muted', role: 'status' }, t('loading')));
  const hash = location.hash;
  state.renderFor = hash;
  (screens[parts[0]] || screens.channels)().catch((err) => {
    if (err.status !== 401 && location.hash === hash) screen(t('error.screen'), errorBox(err));
  });
}

// ---------- channels ----------

async function channelsScreen() {
  const body = h('tbody');
  const replicas = h('p', { class: 'muted' });
  const table = h('table', {},
    h('thead', {}, h('tr', {},
      ['channels.connector', 'channels.state', 'channels.lastEvent', 'channels.lastSend', 'channels.lastError', 'channels.lease', 'channels.standby', 'channels.actions'].map((k) => h('th', { scope: 'col' }, t(k))),
    )),
    body,
  );
  screen(t('channels.title'), replicas, table);
  await every(5000, async () => {
    const data = await api('v1/connectors');
    replicas.textContent = t('channels.replicas', { list: data.replicas.join(', ') || t('never') });
    if (data.connectors.length === 0) return body.replaceChildren(h('tr', {}, h('td', { colspan: 8 }, t('channels.none'))));
    // Keep focus on a button that is redrawn: remember which one had it.
    const focused = document.activeElement?.dataset?.key;
    body.replaceChildren(...data.connectors.map(connectorRow));
    if (focused) body.querySelector(`[data-key="${CSS.escape(focused)}"]`)?.focus();
  });
}

function connectorRow(c) {
  const name = `${c.channel}/${c.account}`;
  const active = c.replicas.find((r) => r.state !== 'standby') || c.replicas[0] || {};
  const standby = c.replicas.filter((r) => r.state === 'standby');
  const lastEvent = c.replicas.map((r) => r.lastEventAt).filter(Boolean).sort().pop();
  const lastSend = c.replicas.map((r) => r.lastSendAt).filter(Boolean).sort().pop();
  const lastError = c.replicas.map((r) => r.lastError).filter(Boolean).sort((a, b) => (a.at < b.at ? -1 : 1)).pop();
  const actions = h('td', {});
  if (c.type === 'whatsapp') actions.append(h('a', { href: `#/pairing/${encodeURIComponent(c.account)}`, 'data-key': `pair:${name}` }, t('channels.pair')), ' ');
  if (canAct()) {
    const button = h('button', { type: 'button', class: 'secondary', 'aria-label': t('channels.restart', { name }), 'data-key': `restart:${name}` }, t('channels.restartShort'));
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        const r = await api(`v1/connectors/${encodeURIComponent(c.channel)}/${encodeURIComponent(c.account)}/restart`, { method: 'POST' });
        toast(t('channels.restarted', { name, replica: r.results.map((x) => x.replica).join(', ') }));
      } catch (err) {
        toast(t('error.generic', { message: errorText(err) }));
      } finally {
        button.disabled = false;
      }
    });
    actions.append(button);
  }
  return h('tr', { 'data-connector': name },
    h('th', { scope: 'row' }, name, h('div', { class: 'muted' }, c.type, c.required ? ` · ${t('channels.required')}` : '')),
    h('td', {}, stateBadge(active.state), active.detail ? h('div', { class: 'muted' }, active.detail) : null),
    h('td', {}, time(lastEvent)),
    h('td', {}, time(lastSend)),
    h('td', {}, lastError ? [stateBadge(lastError.state), ' ', time(lastError.at), lastError.detail ? h('div', { class: 'muted' }, lastError.detail) : null] : t('never')),
    h('td', {}, c.leases.length ? c.leases.map((l) => h('div', {}, l.holder, h('div', { class: 'muted' }, l.key))) : t('never')),
    h('td', {}, standby.length ? standby.map((r) => h('div', {}, r.replica, r.standbyUntil ? h('div', { class: 'muted' }, '≤ ', time(r.standbyUntil)) : null)) : t('never')),
    actions,
  );
}

// ---------- WhatsApp pairing ----------

async function pairingScreen(account) {
  const stateEl = h('span', {});
  const status = h('p', { role: 'status', 'aria-live': 'polite', id: 'pairing-status' });
  const img = h('img', { id: 'qr', alt: '', hidden: true });
  const code = h('p', { class: 'code', id: 'pairing-code' });
  const codeBox = h('div', { hidden: true }, h('p', {}, t('pairing.code')), code);
  const detail = h('p', { class: 'muted' });
  screen(t('pairing.title', { account }),
    h('p', {}, h('a', { href: '#/channels' }, t('pairing.back'))),
    h('div', { class: 'card' }, h('p', {}, t('pairing.state'), ': ', stateEl), detail, status,
      h('div', { class: 'qr' }, img, h('div', {}, h('p', {}, t('pairing.scan')), codeBox))),
  );
  let shownQr = null;
  let objectUrl = null;
  const base = `connectors/whatsapp/${encodeURIComponent(account)}`;
  const prevLeave = () => objectUrl && URL.revokeObjectURL(objectUrl);
  await every(1500, async () => {
    const p = await api(`${base}/pairing`);
    const [badge, raw] = stateBadge(p.state);
    badge.id = 'pairing-state';
    stateEl.replaceChildren(...[badge, raw].filter(Boolean));
    detail.textContent = p.detail || '';
    if (p.qr && p.qr !== shownQr) {
      const res = await api(`${base}/qr.png?at=${encodeURIComponent(p.qrAt || '')}`);
      const blob = await res.blob();
      if (objectUrl) URL.revokeObjectURL(objectUrl);
      objectUrl = URL.createObjectURL(blob);
      img.src = objectUrl;
      img.alt = t('pairing.qrAlt', { at: p.qrAt || '' });
      img.dataset.qr = p.qr;
      img.hidden = false;
      shownQr = p.qr;
    } else if (!p.qr) {
      img.hidden = true;
      img.removeAttribute('src');
      delete img.dataset.qr;
      shownQr = null;
    }
    codeBox.hidden = !p.pairingCode;
    code.textContent = p.pairingCode || '';
    const text = p.state === 'connected' ? t('pairing.connected') : p.qr ? '' : t('pairing.noQr');
    if (status.textContent !== text) status.textContent = text;
  });
  const leave = state.leave;
  state.leave = () => {
    leave?.();
    prevLeave();
  };
}

// ---------- dead letters ----------

async function deadLettersScreen(params) {
  const source = h('input', { id: 'dl-source', name: 'source', value: params.get('source') || '', 'aria-describedby': 'dl-source-hint' });
  const reason = h('input', { id: 'dl-reason', name: 'reason', value: params.get('reason') || '' });
  const ticket = h('input', { id: 'dl-ticket', name: 'ticket', value: params.get('ticket') || '' });
  const form = h('form', { class: 'inline', role: 'search' },
    h('label', { for: 'dl-source' }, t('dl.source'), source, h('span', { id: 'dl-source-hint', class: 'muted' }, t('dl.sourceHint'))),
    h('label', { for: 'dl-reason' }, t('dl.reason'), reason),
    h('label', { for: 'dl-ticket' }, t('dl.ticket'), ticket),
    h('button', { type: 'submit' }, t('dl.filter')),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if (source.value.trim()) q.set('source', source.value.trim());
    if (reason.value.trim()) q.set('reason', reason.value.trim());
    if (ticket.value.trim()) q.set('ticket', ticket.value.trim());
    location.hash = `#/dead-letters?${q}`;
  });
  const results = h('div', { id: 'dl-results' }, t('loading'));
  const outcome = h('div', { role: 'status', 'aria-live': 'polite', id: 'dl-outcome' });
  screen(t('dl.title'), form, outcome, results);
  const q = new URLSearchParams();
  for (const k of ['source', 'reason', 'ticket']) if (params.get(k)) q.set(k, params.get(k));
  const data = await api(`v1/dead-letters?${q}`);
  const rows = data.letters.map((l) => h('tr', { 'data-seq': l.seq },
    h('td', {}, h('a', { href: `#/dead-letters/${l.seq}`, 'aria-label': t('dl.open', { seq: l.seq }) }, String(l.seq))),
    h('td', {}, time(l.at)),
    h('td', {}, sourceLabel(l.source)),
    h('td', {}, l.code ? h('code', { class: 'raw' }, l.code) : ''),
    h('td', {}, l.ticketId ? ticketLink(l.ticketId) : ''),
    h('td', {}, l.reason),
  ));
  const table = data.letters.length
    ? h('table', {}, h('thead', {}, h('tr', {}, ['dl.seq', 'dl.at', 'dl.source', 'dl.code', 'dl.ticket', 'dl.why'].map((k) => h('th', { scope: 'col' }, t(k))))), h('tbody', {}, rows))
    : h('p', {}, t('dl.none'));
  const parts = [table, h('p', { class: 'muted' }, t('dl.scanned', { count: data.scanned }))];
  if (canAct() && data.letters.length && q.toString()) {
    const all = h('button', { type: 'button', id: 'dl-replay-all' }, t('dl.replayAll', { count: data.letters.length }));
    all.addEventListener('click', async () => {
      all.disabled = true;
      try {
        // Exactly the letters on screen: the newest shown bounds the set (letters parked since would take their places).
        const r = await api(`v1/dead-letters/replay?${q}&upTo=${data.letters[0].seq}&limit=${data.letters.length}`, { method: 'POST' });
        outcome.replaceChildren(outcomeList(r.results));
      } catch (err) {
        outcome.replaceChildren(errorBox(err));
      } finally {
        all.disabled = false;
      }
    });
    parts.unshift(h('p', {}, all));
  }
  results.replaceChildren(...parts);
}

/** Who parked a letter, in words, and its source as typed in the filter. */
function sourceLabel(source) {
  return [h('span', { class: 'label', title: source }, label(state.lang, 'source', sourceClass(source))), ' ', h('code', { class: 'raw' }, source)];
}

function outcomeList(results) {
  return h('ul', { class: 'outcomes' }, results.map((r) => h('li', { 'data-seq': r.seq, 'data-outcome': r.outcome },
    `${r.seq}: `, lbl('outcome', r.outcome, false, `outcome-${r.outcome}`), r.detail ? ` — ${r.detail}` : '')));
}

async function letterScreen(seq) {
  const l = await api(`v1/dead-letters/${seq}`);
  const outcome = h('div', { role: 'status', 'aria-live': 'polite', id: 'dl-outcome' });
  let payload = l.payload;
  if (l.payloadEncoding === 'utf8') {
    try {
      payload = JSON.stringify(JSON.parse(l.payload), null, 2);
    } catch {
      /* not JSON: shown as it is */
    }
  }
  const actions = h('p', {});
  if (canAct() && !l.truncated) {
    const b = h('button', { type: 'button', id: 'dl-replay' }, t('dl.replay'));
    b.addEventListener('click', async () => {
      b.disabled = true;
      try {
        const r = await api(`v1/dead-letters/${seq}/replay`, { method: 'POST' });
        outcome.replaceChildren(h('p', {}, t('dl.outcome'), ': '), outcomeList(r.results));
      } catch (err) {
        outcome.replaceChildren(errorBox(err));
      } finally {
        b.disabled = false;
      }
    });
    actions.append(b);
  }
  screen(t('dl.letter', { seq }),
    h('p', {}, h('a', { href: '#/dead-letters' }, t('dl.back'))),
    h('div', { class: 'card' }, h('dl', { class: 'kv' },
      h('dt', {}, t('dl.at')), h('dd', {}, time(l.at)),
      h('dt', {}, t('dl.source')), h('dd', {}, sourceLabel(l.source)),
      h('dt', {}, t('dl.subject')), h('dd', {}, l.subject),
      h('dt', {}, t('dl.code')), h('dd', {}, l.code ? h('code', { class: 'raw' }, l.code) : t('never')),
      ...(l.ticketId ? [h('dt', {}, t('dl.ticket')), h('dd', {}, ticketLink(l.ticketId))] : []),
      h('dt', {}, t('dl.why')), h('dd', {}, l.reason),
    ), l.truncated ? h('p', { class: 'error' }, t('dl.truncated')) : null),
    actions, outcome,
    h('h2', {}, t('dl.payload')), l.payloadWithheld ? h('p', {}, t('dl.withheld')) : h('pre', { tabindex: '0' }, payload),
  );
}

// ---------- tickets ----------

async function ticketsScreen(params) {
  const q = (params.get('q') || '').trim();
  const status = params.get('status') || '';
  const input = h('input', { id: 'ticket-q', name: 'q', type: 'search', value: q });
  const statusSelect = h('select', { id: 'ticket-status', name: 'status' },
    h('option', { value: '' }, t('tickets.anyStatus')),
    Object.keys(LABELS.status).map((s) => h('option', { value: s, selected: s === status, title: s }, label(state.lang, 'status', s))));
  const form = h('form', { class: 'inline', role: 'search' },
    h('label', { for: 'ticket-q' }, t('tickets.search'), input),
    h('label', { for: 'ticket-status' }, t('tickets.status'), statusSelect),
    h('button', { type: 'submit' }, t('tickets.go')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const next = new URLSearchParams();
    if (input.value.trim()) next.set('q', input.value.trim());
    if (statusSelect.value) next.set('status', statusSelect.value);
    location.hash = `#/tickets?${next}`;
  });
  const results = h('div', { id: 'ticket-results' }, t('loading'));
  screen(t('tickets.title'), form, results);
  const { tickets, fallback, nextCursor } = await searchTickets(q, status);
  const parts = [];
  if (fallback && q) parts.push(h('p', { class: 'muted' }, t('tickets.fallback')));
  if (!tickets.length) parts.push(h('p', {}, t('tickets.none')));
  else {
    const body = h('tbody', {}, tickets.map(ticketRow));
    parts.push(h('table', {}, h('thead', {}, h('tr', {}, ['tickets.number', 'tickets.status', 'tickets.channel', 'tickets.contact', 'tickets.subject', 'tickets.updated'].map((k) => h('th', { scope: 'col' }, t(k))))), body));
    // The backlog page by page (the list's own cursor), not only its newest 50.
    let cursor = nextCursor;
    if (cursor) {
      const more = h('button', { type: 'button', id: 'tickets-more', class: 'secondary' }, t('tickets.more'));
      more.addEventListener('click', async () => {
        more.disabled = true;
        try {
          const page = await api(`v1/tickets?${new URLSearchParams({ limit: '50', cursor, ...(status ? { status } : {}) })}`);
          body.append(...page.tickets.map(ticketRow));
          cursor = page.nextCursor;
          if (!cursor) more.remove();
        } catch (err) {
          toast(t('error.generic', { message: errorText(err) }));
        } finally {
          more.disabled = false;
        }
      });
      parts.push(h('p', {}, more));
    }
  }
  results.replaceChildren(...parts);
}

/** A failed reply's ticket, opened on the ticket screen. */
function ticketLink(id) {
  return h('a', { href: `#/ticket/${encodeURIComponent(id)}` }, id);
}

function ticketRow(tk) {
  const failed = tk.failedReplies?.length || 0;
  return h('tr', { 'data-ticket': tk.id },
    h('td', {}, h('a', { href: `#/ticket/${encodeURIComponent(tk.id)}`, 'aria-label': t('tickets.open', { number: tk.number }) }, `#${tk.number}`)),
    // A failed reply next to the status: `open` alone does not say the customer was never answered.
    h('td', {}, lbl('status', tk.status, false, 'state'),
      failed ? h('div', { class: 'failed-mark error', title: t('ticket.failedReplies', { count: failed }) }, t('tickets.failedMark', { count: failed })) : null),
    h('td', {}, `${tk.channel}/${tk.account}`, replyWindow(tk.replyWindowEndsAt)),
    h('td', {}, tk.contact?.displayName || tk.contact?.id || ''),
    h('td', {}, tk.subject || '', tk.snippet ? h('div', { class: 'muted' }, tk.snippet) : null),
    h('td', {}, time(tk.updatedAt)),
  );
}

/** Where the channel limits free-form replies (WhatsApp's 24 hours): until when one is allowed, or that it is not any more. */
function replyWindow(endsAt) {
  if (!endsAt) return null;
  const open = Date.parse(endsAt) > Date.now();
  return h('div', { class: open ? 'reply-window muted' : 'reply-window error' }, t(open ? 'tickets.windowUntil' : 'tickets.windowClosed'), ' ', time(endsAt));
}

/**
 * A ticket number is looked up directly. Otherwise /v1/search (full text over messages, SQL read
 * model) together with the list's contact filter; without search (404): the contact filter, then
 * the subjects and contact names of the 500 most recently updated tickets.
 */
async function searchTickets(q, status) {
  if (!q) {
    const page = await api(`v1/tickets?${new URLSearchParams({ limit: '50', ...(status ? { status } : {}) })}`);
    return { tickets: page.tickets, fallback: false, nextCursor: page.nextCursor };
  }
  const number = /^#?(\d+)$/.exec(q) || new RegExp(`^${escapeRe(state.session.ticketPrefix)}(\\d+)$`, 'i').exec(q);
  if (number) {
    try {
      const r = await api(`v1/tickets/${encodeURIComponent(state.session.ticketPrefix + number[1])}`);
      return { tickets: [r.ticket], fallback: false };
    } catch (err) {
      if (err.status !== 404) throw err;
    }
  }
  // What people type is a word of a message or who wrote it (an id, phone or email): ask both.
  const byContact = (await api(`v1/tickets?${new URLSearchParams({ contact: q, limit: '50' })}`)).tickets;
  try {
    const r = await api(`v1/search?${new URLSearchParams({ q })}`);
    // Hits carry a snippet with the matched words in <b>…</b>, the rest HTML-escaped: shown as plain text.
    const hits = (r.results || []).map((hit) => ({ ...hit.ticket, snippet: plainSnippet(hit.snippet) }));
    const seen = new Set(hits.map((tk) => tk.id));
    return { tickets: [...hits, ...byContact.filter((tk) => !seen.has(tk.id))], fallback: false };
  } catch (err) {
    if (err.status !== 404) throw err;
  }
  if (byContact.length) return { tickets: byContact, fallback: true };
  const needle = q.toLowerCase();
  const recent = (await api('v1/tickets?limit=500')).tickets;
  const hay = (tk) => [tk.subject, tk.contact?.displayName, tk.contact?.id, ...Object.values(tk.contact?.handles || {})].filter(Boolean).join('\n').toLowerCase();
  return { tickets: recent.filter((tk) => hay(tk).includes(needle)), fallback: true };
}

function escapeRe(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

async function ticketScreen(id) {
  let data;
  try {
    data = await api(`v1/tickets/${encodeURIComponent(id)}`);
  } catch (err) {
    if (err.status === 404) return void screen(t('ticket.notFound'));
    throw err;
  }
  const tk = data.ticket;
  screen(t('ticket.title', { number: tk.number }),
    h('div', { class: 'card' }, h('dl', { class: 'kv' },
      h('dt', {}, t('tickets.status')), h('dd', {}, lbl('status', tk.status, false, 'state')),
      h('dt', {}, t('tickets.channel')), h('dd', {}, `${tk.channel}/${tk.account} · ${tk.conversation.id}`),
      h('dt', {}, t('tickets.contact')), h('dd', {}, tk.contact.displayName ? `${tk.contact.displayName} (${tk.contact.id})` : tk.contact.id),
      tk.subject ? [h('dt', {}, t('tickets.subject')), h('dd', {}, tk.subject)] : null,
    )),
    // A reply that never reached the customer stays in sight after a later one went out.
    tk.failedReplies?.length
      ? h('div', { class: 'card error', id: 'failed-replies', role: 'note' }, h('p', {}, t('ticket.failedReplies', { count: tk.failedReplies.length }), tk.failedReplies.length >= 10 ? ` ${t('ticket.failedNewest')}` : ''),
        h('ul', {}, tk.failedReplies.map((f) => h('li', {}, time(f.at), ' — ', f.reason, ' ', h('a', { href: `#/dead-letters?${new URLSearchParams({ source: 'outbound', ticket: tk.id })}` }, t('ticket.failedLetters'))))))
      : null,
    h('h2', {}, t('ticket.log')),
    h('ol', { class: 'log', id: 'ticket-log' }, data.log.map(logEntry)),
  );
}

function why(match) {
  if (!match) return null;
  return h('div', { class: 'why', 'data-rule': match.rule, title: t(`rule.${match.rule}`) },
    t('ticket.why', { rule: match.rule, value: match.value }), h('span', { class: 'muted' }, ` — ${t(`rule.${match.rule}`)}`));
}

/** An entry's files by name; each downloads with the session's token (a plain link would carry none). */
function attachmentList(attachments) {
  return h('ul', { class: 'attachments' }, attachments.map((a) => {
    const label = `${a.name || a.mimeType}${a.size ? ` (${Math.ceil(a.size / 1024)} KB)` : ''}`;
    const key = a.ref || a.objectKey;
    if (!key || a.status === 'failed') return h('li', { class: 'muted' }, label, a.error ? ` — ${a.error}` : '');
    // Deleted by retention.attachments after it was logged: a link would only answer 410.
    if (a.status === 'expired') return h('li', { class: 'muted', 'data-status': 'expired' }, label, ` — ${t('ticket.attachmentExpired')}`);
    const button = h('button', { type: 'button', class: 'link' }, label);
    button.addEventListener('click', async () => {
      try {
        // Not api(): it parses a JSON body, and a customer's .json file must download as a file.
        const res = await fetch(new URL(`v1/attachments/${key}`, API), { headers: { authorization: `Bearer ${state.token}` } });
        if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null), res.headers);
        const url = URL.createObjectURL(await res.blob());
        const link = h('a', { href: url, download: a.name || 'attachment' });
        link.click();
        setTimeout(() => URL.revokeObjectURL(url), 60_000);
      } catch (err) {
        toast(t('error.generic', { message: errorText(err) }));
      }
    });
    return h('li', {}, button);
  }));
}

/** "Name (id)", or the id alone: a display name is the sender's own claim, so the id is always shown. */
function sender(ev) {
  return ev.sender?.displayName ? `${ev.sender.displayName} (${ev.sender.id})` : ev.sender?.id;
}

function logEntry(e) {
  const li = (kind, ...children) => h('li', { class: kind, 'data-kind': kind, 'data-seq': e.seq }, h('div', { class: 'meta' }, time(e.at)), ...children);
  switch (e.kind) {
    case 'inbound': {
      const ev = e.event;
      return li('inbound', h('div', { class: 'meta' }, sender(ev), ev.email?.subject ? ` · ${ev.email.subject}` : ''), h('div', { class: 'text' }, ev.text), ev.attachments?.length ? attachmentList(ev.attachments) : null, why(e.match));
    }
    // Who changed it: on a webhook channel another sender could (before the gateway refused it), and an operator must see whose words these are.
    case 'edited':
      return li('edited', h('div', { class: 'meta' }, t('ticket.edited'), e.event.sender ? ` · ${sender(e.event)}` : ''), h('div', { class: 'text' }, e.event.text), why(e.match));
    case 'deleted':
      return li('deleted', h('div', {}, t('ticket.deleted'), e.event?.sender ? ` · ${sender(e.event)}` : ''), why(e.match));
    case 'outbound':
      return li('outbound', h('div', { class: 'meta' }, t('ticket.agent', { author: e.message.author?.name || e.message.author?.id })), h('div', { class: 'text' }, e.message.text));
    case 'note':
      return li('note', h('div', { class: 'meta' }, t('ticket.note', { author: e.author?.name || e.author?.id })), h('div', { class: 'text' }, e.text));
    case 'delivery':
      return li('delivery', tn('ticket.delivery', { status: lbl('delivery', e.status.status) }), e.status.reason ? ` — ${e.status.reason}` : '');
    case 'status':
      return li('status', tn('ticket.status', { from: e.from ? lbl('status', e.from) : '∅', to: lbl('status', e.to) }), e.reason ? ` — ${e.reason}` : '');
    case 'sla':
      return li('sla', tn('ticket.sla', { breach: lbl('breach', e.breach) }));
    case 'rating':
      return li('rating', t('ticket.rating', { rating: e.rating }));
    case 'escalation':
      return li('escalation', tn('ticket.escalation', { reason: lbl('breach', e.reason), target: e.target, outcome: lbl('escalation', e.outcome) }));
    default:
      return li(String(e.kind), JSON.stringify(e));
  }
}

// ---------- live tail ----------

async function liveScreen() {
  const status = h('p', { role: 'status', id: 'live-status' }, t('live.waiting'));
  const list = h('ul', { class: 'tail', id: 'live-list', 'aria-live': 'polite', 'aria-relevant': 'additions' });
  screen(t('live.title'), status, list);
  const abort = new AbortController();
  state.leave = () => abort.abort();
  while (!abort.signal.aborted) {
    try {
      await tail(abort.signal, () => (status.textContent = t('live.connected')), (ev) => {
        // An erased ticket's event names the ticket and the erasure only: nothing to link to.
        if (ev.type === 'ticket.erased') list.prepend(h('li', { 'data-type': ev.type }, time(ev.at), ' ', h('strong', {}, lbl('event', ev.type)), ` ${ev.ticketId} · ${ev.reason}`));
        else list.prepend(h('li', { 'data-type': ev.type },
          time(ev.at), ' ', h('strong', {}, lbl('event', ev.type)), ' ',
          h('a', { href: `#/ticket/${encodeURIComponent(ev.ticketId)}` }, `#${ev.ticketNumber}`),
          ` ${ev.channel}/${ev.account} · `, lbl('status', ev.status),
          ev.entry?.kind === 'inbound' ? ` · ${String(ev.entry.event.text).slice(0, 120)}` : ''));
        while (list.children.length > 200) list.lastChild.remove();
      });
    } catch (err) {
      if (abort.signal.aborted || err.status === 401) return;
    }
    if (abort.signal.aborted) return;
    status.textContent = t('live.lost');
    await new Promise((r) => setTimeout(r, 3000));
  }
}

/** Server-sent events over fetch (EventSource cannot send the Authorization header). */
async function tail(signal, onOpen, onEvent) {
  const res = await api('v1/events/tickets', { signal, headers: { accept: 'text/event-stream' } });
  onOpen();
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
      if (data) onEvent(JSON.parse(data));
    }
  }
}

// ---------- start ----------

function boot() {
  let stored = null;
  try {
    stored = localStorage.getItem('omnigate.lang');
  } catch {
    /* storage refused: the browser's language then */
  }
  state.lang = initialLanguage(stored, navigator.languages);
  document.getElementById('lang').addEventListener('change', (e) => {
    state.lang = e.target.value;
    try {
      localStorage.setItem('omnigate.lang', state.lang);
    } catch {
      /* not kept: this page only */
    }
    applyLanguage();
    route();
  });
  document.getElementById('signout').addEventListener('click', signOut);
  window.addEventListener('hashchange', route);
  applyLanguage();
  if (state.token) startSession().catch(() => signOut());
  else renderSignIn();
}

boot();
