import { describe, expect, it } from 'vitest';
import { replyRecipients, withBouncedCopies, withMailParties, withReplyMessageId, withReplyTo } from '../../src/router/mail-recipients.js';
import type { Ticket } from '../../src/core/schema.js';

const ticket = (last: { author: string; to: string[]; cc: string[] }, authors: string[]): Ticket =>
  ({
    id: 'T-1', conversation: { id: 'support@firm.ru', kind: 'email' }, contact: { id: 'boss@client.ru', handles: { email: 'boss@client.ru' } },
    participants: ['boss@client.ru', 'colleague@client.ru'], emailParties: { last, authors, own: ['support@firm.ru'] },
  }) as unknown as Ticket;

describe('email reply recipients', () => {
  it('copies who the newest mail named, not an earlier writer the customer left out of it', () => {
    // The colleague wrote once; then the customer wrote alone, to raise something private.
    const t = ticket({ author: 'boss@client.ru', to: ['support@firm.ru'], cc: [] }, ['boss@client.ru', 'colleague@client.ru']);
    expect(replyRecipients(t, {}, false)).toMatchObject({ to: ['boss@client.ru'], cc: [] });
  });

  it('answers the colleague who wrote last, with the customer and the rest of their mail in Cc', () => {
    const t = ticket({ author: 'colleague@client.ru', to: ['support@firm.ru'], cc: ['third@client.ru'] }, ['boss@client.ru', 'colleague@client.ru']);
    expect(replyRecipients(t, {}, false)).toMatchObject({ to: ['colleague@client.ru'], cc: ['third@client.ru', 'boss@client.ru'] });
  });

  it('sends automatic mail to the customer alone', () => {
    const t = ticket({ author: 'colleague@client.ru', to: [], cc: ['third@client.ru'] }, []);
    expect(replyRecipients(t, {}, true)).toMatchObject({ to: ['boss@client.ru'], cc: [] });
  });

  it('leaves out copies that bounced until they write again; the agent may still name them; keeps the To of the newest replies', () => {
    const t = ticket({ author: 'boss@client.ru', to: ['support@firm.ru'], cc: ['colleague@client.ru', 'third@client.ru'] }, ['boss@client.ru']);
    t.emailParties = withBouncedCopies(t.emailParties!, ['Colleague@Client.ru']);
    expect(replyRecipients(t, {}, false)).toMatchObject({ to: ['boss@client.ru'], cc: ['third@client.ru'] });
    expect(replyRecipients(t, { cc: ['colleague@client.ru'] }, false)).toMatchObject({ cc: ['colleague@client.ru'] });
    // Records carried over the next mail; the bounced colleague writing takes them off the list.
    let p = withReplyTo(t.emailParties, 'out-1', ['Boss@client.ru']);
    p = withReplyMessageId(p, 'out-1', '<omni.T-1.x@firm.ru>')!;
    for (let i = 2; i <= 12; i++) p = withReplyTo(p, `out-${i}`, ['boss@client.ru']);
    expect(p.replies).toHaveLength(10);
    expect(p.replies![0]!.outboundId).toBe('out-3');
    const next = withMailParties(withReplyMessageId(withReplyTo(t.emailParties, 'out-1', ['boss@client.ru']), 'out-1', '<m1>'), {
      messageId: '<m2>', from: 'colleague@client.ru', to: ['support@firm.ru'], cc: [], references: [], subject: '',
    });
    expect(next.replies).toEqual([{ outboundId: 'out-1', to: ['boss@client.ru'], messageId: '<m1>' }]);
    expect(next.bouncedCopies).toBeUndefined();
  });
});
