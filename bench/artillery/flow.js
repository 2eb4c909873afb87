// Artillery Playwright flow for the chat app: the same iteration as
// bootfleet's scenario (open, log in, wait for the room, MESSAGES websocket
// messages), repeated until HOLD_S seconds after the user's start.
async function chat(page, vuContext, events, test) {
  const end = Date.now() + Number(process.env.HOLD_S || 20) * 1000;
  const messages = Number(process.env.MESSAGES || 50);
  const user = 'user' + Math.floor(Math.random() * 1e6);
  const target = vuContext.vars.target;
  while (Date.now() < end) {
    await page.goto(target + '/');
    await page.fill('#user', user);
    await page.click('#login');
    const t0 = performance.now();
    await page.waitForSelector('.room.ready');
    events.emit('histogram', 'ready', performance.now() - t0);
    await page.waitForFunction((n) => document.querySelectorAll('#log li').length >= n, messages, {polling: 20, timeout: 30000});
    events.emit('counter', 'iterations', 1);
  }
}
module.exports = { chat };
