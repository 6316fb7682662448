/**
 * Zammad adapter against the stand-in: erasing a ticket removes everything the adapter kept for
 * its Zammad ticket in its own key space, the last seen state (`state.<id>`) included. The state
 * name was left behind after every erasure, keyed by the deleted Zammad ticket's id.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pino } from 'pino';
import { ZammadStandin } from '../helpers/zammad-standin.js';
import { ZammadOptions } from '../../src/helpdesks/zammad/index.js';
import { ZammadAdapter } from '../../src/helpdesks/zammad/adapter.js';
import { helpdeskTexts } from '../../src/helpdesks/texts.js';
import type { HelpdeskContext } from '../../src/helpdesks/contract.js';
import type { TicketEvent } from '../../src/core/schema.js';
import type { MediaStore } from '../../src/core/media.js';

const TOKEN = 'zammad-token-0123456789abcdef';
let zammad: ZammadStandin;

beforeAll(async () => {
  zammad = new ZammadStandin({ token: TOKEN });
  zammad.integration.roles.push('Admin'); // Zammad deletes tickets for the admin permission only
  await zammad.start();
});
afterAll(async () => {
  await zammad?.stop();
});

/** The adapter's own key space as the host gives it (mapping.ts adapterState), in memory. */
function memoryState(): { keys: Map<string, string>; state: HelpdeskContext['state'] } {
  const keys = new Map<string, string>();
  let revision = 0;
  return {
    keys,
    state: {
      get: async (key) => (keys.has(key) ? { value: keys.get(key)!, revision } : null),
      put: async (key, value) => (keys.set(key, value), ++revision),
      delete: async (key) => void keys.delete(key),
    },
  };
}

function context(state: HelpdeskContext['state'], signal: AbortSignal): HelpdeskContext {
  return {
    id: 'zammad', installationId: 'test-installation', texts: helpdeskTexts('ru'), log: pino({ level: 'silent' }),
    media: {} as MediaStore, state, http: { route: () => {} } as unknown as HelpdeskContext['http'], signal,
    takeAnswer: () => Promise.reject(new Error('no answers in this test')), taken: async () => false, lookup: async () => null, setHealth: () => {},
  };
}

it('forgets the last seen state of a Zammad ticket when its omnigate ticket is erased', async () => {
  const now = new Date().toISOString();
  const id = 901;
  zammad.tickets.set(id, {
    id, number: '90901', title: 'Оплата не проходит', group_id: 1, state_id: 2, priority_id: 2, customer_id: zammad.agent.id, owner_id: 1,
    created_by_id: zammad.integration.id, updated_by_id: zammad.integration.id, article_ids: [], created_at: now, updated_at: now,
  });
  const { keys, state } = memoryState();
  const stop = new AbortController();
  const adapter = new ZammadAdapter(ZammadOptions.parse({ url: zammad.url, token: TOKEN, poll: { interval: '0s' } }), context(state, stop.signal));
  const ticket = { externalId: String(id), url: `${zammad.url}/#ticket/zoom/${id}` };
  // An omnigate status change written to Zammad: the adapter remembers the state it set.
  const status = { type: 'ticket.status', ticketId: 'T-1', entry: { kind: 'status', to: 'closed', author: { id: 'agent:1' } } } as unknown as TicketEvent;
  expect(await adapter.apply(status, { ticket, uncertain: false })).toBe('applied');
  expect(keys.get(`state.${id}`)).toBe('closed');

  await adapter.erase(ticket, 'T-1');
  expect(zammad.tickets.has(id)).toBe(false);
  expect([...keys.keys()].filter((k) => k.includes(String(id)))).toEqual([]);
  stop.abort();
});

it('a poll pass that finds a watched ticket deleted forgets its last seen state too', async () => {
  // As a pass that read the ticket just before the erasure deleted it leaves things: the ticket
  // back in the poll list, its state written again after erase() had forgotten it.
  const { keys, state } = memoryState();
  keys.set('poll', JSON.stringify({ 902: { updatedAt: '', lastArticleId: 0, touched: Date.now() } }));
  keys.set('state.902', 'open');
  const stop = new AbortController();
  const adapter = new ZammadAdapter(ZammadOptions.parse({ url: zammad.url, token: TOKEN, poll: { interval: '0s' } }), context(state, stop.signal));
  expect(zammad.tickets.has(902)).toBe(false);
  await adapter.poll();
  expect(JSON.parse(keys.get('poll')!)).toEqual({});
  expect(keys.has('state.902')).toBe(false);
  stop.abort();
});
