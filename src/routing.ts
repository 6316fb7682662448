/**
 * What a gateway with `router.enabled` runs besides the read model: the router, the commands it
 * answers, the auto-acknowledgement of new tickets, and the lifecycle watcher (SLA, satisfaction
 * requests), all writing through one texts module.
 */
import type { GatewayConfig } from './core/config-schema.js';
import type { Bus } from './core/bus.js';
import type { Logger } from './core/logger.js';
import { errorMessage } from './core/errors.js';
import type { Supervisor } from './core/supervisor.js';
import { untilAborted } from './core/sleep.js';
import { holderOf } from './core/holder.js';
import { Texts } from './core/texts.js';
import { Router } from './router/router.js';
import { CommandHandler } from './router/commands.js';
import { autoAcknowledge } from './router/auto-acknowledgement.js';
import { nextOpening } from './router/business-hours.js';
import { LifecycleWatcher } from './router/lifecycle.js';
import { highestTicketNumber } from './read-model/queries.js';
import type { ReadModel } from './read-model/read-model.js';
import type { TemplateSupportLookup } from './core/reply-templates.js';

export interface Routing {
  router?: Router;
  commands?: CommandHandler;
  sla?: LifecycleWatcher;
}

export interface RoutingDeps {
  bus: Bus;
  config: GatewayConfig;
  log: Logger;
  loops: Supervisor;
  /** This gateway's instance id (holder.ts): the router and the lifecycle watcher hold leases under it. */
  instance: string;
  readModel?: ReadModel;
  /** What each configured channel account does with a reply's template (connectors/reply-templates.ts). */
  templates?: TemplateSupportLookup;
}

/**
 * Starts the routing modules, setting each on `into` as soon as it exists: a start that fails
 * halfway leaves what did start there for the gateway's stop to stop.
 */
export async function startRouting(into: Routing, d: RoutingDeps): Promise<void> {
  const { bus, config: c, log, loops, instance, readModel } = d;
  const router = new Router(bus, log.child({ component: 'router' }), {
    ticketPrefix: c.router.ticketPrefix,
    firstTicketNumber: c.router.firstTicketNumber,
    reopenWindowMs: c.router.reopenWindow,
    colleagueDomains: c.router.colleagueDomains,
    concurrency: c.router.concurrency,
    ackWaitMs: c.router.ackWait,
    straySweepMs: c.router.straySweep,
    csatWindowMs: c.router.csat.window,
    csatLowRating: c.router.csat.lowRating,
    holder: holderOf(instance, 'router'),
    ...(readModel && { numberFloor: () => ticketNumberFloor(readModel, log) }),
  }, loops);
  into.router = router;
  // Cached tickets that may have been evicted since are read again (tickets.ts).
  router.store.evictClosedAfterMs = c.tickets.evictClosedAfter;
  await router.start();
  const commands = new CommandHandler(bus, router.store, router.journal, log.child({ component: 'commands' }), loops);
  into.commands = commands;
  if (d.templates) commands.templateSupport = d.templates;
  commands.start();
  const sla = c.router.sla;
  const csat = c.router.csat;
  // One texts module for everything the gateway writes itself; the older per-section keys still override.
  const texts = new Texts(
    c.router.language,
    { ...c.router.texts, autoAcknowledge: c.router.texts.autoAcknowledge ?? c.router.autoAcknowledge.text, satisfactionRequest: c.router.texts.satisfactionRequest ?? csat.text },
    sla.businessHours,
    nextOpening,
  );
  // Rendered per ticket, at the moment it is sent: inside business hours the text differs from a
  // Friday night's, which names the next opening.
  const ack = { enabled: c.router.autoAcknowledge.enabled, perSenderPerHour: c.router.autoAcknowledge.perSenderPerHour, render: (vars: { ticket: string; name: string }) => texts.render('autoAcknowledge', vars) };
  commands.ticketLine = (token) => texts.render('mailTicketLine', { ticket: token });
  const ackLog = log.child({ component: 'auto-ack' });
  router.onTicketOpened = (ticket, event) =>
    autoAcknowledge(bus, commands, ack, ticket, event.email?.from ?? event.sender.id, ackLog);
  const watcher = new LifecycleWatcher(bus, router.store, router.journal, {
    sla: { enabled: sla.enabled, firstResponseMs: sla.firstResponse, noAnswerMs: sla.noAnswer, businessHours: sla.businessHours },
    csat: {
      enabled: csat.enabled,
      delayMs: csat.delay,
      windowMs: csat.window,
      send: async (t) => {
        const text = texts.render('satisfactionRequest', { ticket: t.id, name: t.contact.displayName ?? '' });
        const r = await commands.reply({ ticketId: t.id, text, idempotencyKey: 'satisfaction-request', author: { id: 'omnigate', name: 'satisfaction-request' } }, { purpose: 'satisfaction_request' });
        if (!r.ok) throw new Error(`satisfaction request not sent: ${r.error.code}: ${r.error.message}`);
      },
    },
    checkIntervalMs: sla.checkInterval,
    texts,
    // Each pass first lets the read model catch up with the log (bounded), so it sees what the log holds.
    due: async (kind, now) => {
      await readModel!.openAndCaughtUp(5000);
      return readModel!.dueTickets(kind, { now, firstResponseMs: sla.firstResponse, noAnswerMs: sla.noAnswer, csatDelayMs: csat.delay, csatWindowMs: csat.window });
    },
    escalate: sla.escalate && {
      channel: sla.escalate.channel,
      account: sla.escalate.account,
      conversation: { id: sla.escalate.conversationId, kind: sla.escalate.kind },
    },
  }, log.child({ component: 'lifecycle' }), c.nats.leaseTtl, holderOf(instance, 'lifecycle'), loops);
  into.sla = watcher;
  watcher.start();
  router.onLowRating = (t, rating) => watcher.lowRating(t, rating);
}

/**
 * How long the first ticket number of a new NATS store waits for a read model that may hold
 * history (once per store): an existing PGlite directory opens in a second or two, PostgreSQL at
 * once, but on a loaded host either may take longer, and giving up is what risks a number twice.
 */
const NUMBER_FLOOR_WAIT_MS = 20_000;

/**
 * The highest ticket number the read model holds (router/ticket-numbers.ts numberBase), asked once, when a
 * NATS store has no numbering yet. Best effort and bounded: a read model that does not answer in
 * time (PostgreSQL away; a PGlite directory another replica on this host holds) must not stop new
 * tickets on a new deployment, so numbering then starts as configured, and the log says what that
 * risks.
 */
async function ticketNumberFloor(readModel: ReadModel, log: Logger): Promise<number> {
  // A first start: PGlite's initdb may take half a minute on a small host, and there is nothing
  // in it to read (the warning below was a false alarm on every new embedded deployment).
  if (readModel.startedEmpty) return 0;
  try {
    return await untilAborted(readModel.database().then(highestTicketNumber), AbortSignal.timeout(NUMBER_FLOOR_WAIT_MS));
  } catch (err) {
    log.warn({ err: errorMessage(err) }, 'the read model did not say which ticket numbers it holds: numbering starts at router.firstTicketNumber (if this NATS store replaced one with history, numbers the read model holds will be given again)');
    return 0;
  }
}
