import type { Driver } from './driver.js';
import { createOAuth2Driver } from './oauth2.js';

/** Every driver tokend ships, fresh instances; a new provider family adds one line here. */
function builtinDrivers(): Driver[] {
  return [createOAuth2Driver()];
}

let defaults: readonly Driver[] | undefined;

/** The driver called `name` (an account's `driver`), or undefined when there is none. */
export function getDriver(name: string, drivers: readonly Driver[] = (defaults ??= builtinDrivers())): Driver | undefined {
  return drivers.find((d) => d.name === name);
}
