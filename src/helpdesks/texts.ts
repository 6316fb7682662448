/**
 * What the helpdesk adapters write into a helpdesk by themselves — notes about deliveries, edits
 * and deletions, the signature of replies sent from elsewhere — in the team's language
 * (`router.language`): agents at a Russian support desk read these next to the customer's words.
 */
import type { Language } from '../core/texts.js';

export interface HelpdeskTexts {
  /** A customer article with neither text nor HTML (attachments only). */
  noText: string;
  /** A reply sent outside the helpdesk (the API, an automatic message): its signature line. */
  sentBy(who: string): string;
  /** Who sent an automatic message. */
  automatic(purpose: string | undefined): string;
  /** An omnigate note, signed. */
  noteBy(author: string): string;
  deliveryFailed(channel: string, reason: string): string;
  edited(channel: string, text: string): string;
  deleted(channel: string): string;
  /** An agent's answer on a ticket omnigate no longer has (erased): not sent. */
  answerNotSent(ticket: string): string;
  /** A helpdesk ticket opened from a later event: its first messages follow as they arrive. */
  earlierMessagesFollow(ticket: string, channel: string): string;
  /** The helpdesk ticket omnigate writes a ticket's events to was merged into this one. */
  mergedHere(merged: string, ticket: string): string;
}

const TEXTS: Record<Language, HelpdeskTexts> = {
  en: {
    noText: '(no text)',
    sentBy: (who) => `— sent by ${who} through omnigate`,
    automatic: (purpose) => `omnigate (${purpose ?? 'automatic'})`,
    noteBy: (author) => `— note by ${author} in omnigate`,
    deliveryFailed: (channel, reason) => `⚠ The customer did NOT receive the last answer (${channel}): ${reason}. The ticket is open again in omnigate.`,
    edited: (channel, text) => `The customer edited a message (${channel}); it now reads:\n\n${text}`,
    deleted: (channel) => `The customer deleted one of their messages (${channel}).`,
    answerNotSent: (ticket) => `⚠ This answer was NOT sent to the customer: omnigate no longer has ticket ${ticket} (erased on request or by retention, or its record lost). Reach the customer another way if they still need it.`,
    earlierMessagesFollow: (ticket, channel) => `Ticket ${ticket} (${channel}): its earlier messages did not reach this helpdesk when it was opened (sent before it was connected, or held back while it was unreachable); they follow here as they arrive.`,
    mergedHere: (merged, ticket) => `omnigate ticket ${ticket} was written to ticket ${merged}, which was merged into this one: its customer's messages and omnigate's notes about it are written here from now on.`,
  },
  ru: {
    noText: '(без текста)',
    sentBy: (who) => `— отправлено через omnigate: ${who}`,
    automatic: (purpose) => `omnigate (${purpose ?? 'автоматически'})`,
    noteBy: (author) => `— заметка в omnigate: ${author}`,
    deliveryFailed: (channel, reason) => `⚠ Клиент НЕ получил последний ответ (${channel}): ${reason}. Обращение в omnigate снова открыто.`,
    edited: (channel, text) => `Клиент изменил сообщение (${channel}); теперь оно такое:\n\n${text}`,
    deleted: (channel) => `Клиент удалил одно из своих сообщений (${channel}).`,
    answerNotSent: (ticket) => `⚠ Этот ответ НЕ отправлен клиенту: в omnigate больше нет обращения ${ticket} (удалено по запросу, по сроку хранения или утеряно). Если ответ ещё нужен, свяжитесь с клиентом иначе.`,
    earlierMessagesFollow: (ticket, channel) => `Обращение ${ticket} (${channel}): его первые сообщения не попали в эту систему при открытии (пришли до подключения или были задержаны, пока она была недоступна); они появятся здесь по мере поступления.`,
    mergedHere: (merged, ticket) => `Обращение omnigate ${ticket} велось в заявке ${merged}, которую объединили с этой: сообщения клиента и заметки omnigate по нему теперь пишутся сюда.`,
  },
};

export function helpdeskTexts(language: Language): HelpdeskTexts {
  return TEXTS[language];
}
