import { describe, expect, it } from 'vitest';
import { replyRecipients } from '../../src/router/mail-recipients.js';
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
});
