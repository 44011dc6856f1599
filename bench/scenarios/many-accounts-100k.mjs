// 13. 100 000 accounts with grants: row 7's scenario at ten times the size, with the memory
// each extra account costs.
import { manyAccounts } from './many-accounts.mjs';

export default manyAccounts({ id: 13, count: 100_000, rssMb: 300, readyMs: 3000, perAccount: true });
