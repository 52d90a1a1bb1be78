// Runs graphql-http's server audits (the GraphQL-over-HTTP reference suite)
// against the API at the URL given, with the token given, one line per audit.
// Exits 1 when a MUST or SHOULD audit fails; a failed MAY is printed only.
//
//   node audit.mjs http://127.0.0.1:8700/graphql "$TOKEN"
import { serverAudits } from 'graphql-http';

const [url, token] = process.argv.slice(2);
if (!url || !token) {
  console.error('usage: node audit.mjs URL TOKEN');
  process.exit(2);
}
const fetchFn = (input, init = {}) =>
  fetch(input, { ...init, headers: { ...init.headers, authorization: `Bearer ${token}` } });

let failed = 0;
for (const audit of serverAudits({ url, fetchFn })) {
  const result = await audit.fn();
  if (result.status === 'ok') {
    console.log(`ok     ${result.id} ${result.name}`);
    continue;
  }
  const body = await result.response?.text().catch(() => '');
  console.log(`${result.status.padEnd(6)} ${result.id} ${result.name}: ${result.reason} ${body ?? ''}`);
  if (result.status !== 'notice') failed += 1;
}
console.log(failed ? `${failed} MUST or SHOULD audit(s) failed` : 'every MUST and SHOULD audit passed');
process.exit(failed ? 1 : 0);
