import { createAmpDriver } from './amp.js';
import { createCalComDriver } from './cal-com.js';
import type { Driver } from './driver.js';
import { createOAuth2Driver } from './oauth2.js';
import { createRealDebridDriver } from './real-debrid.js';

/** Every driver family tokend ships; a new provider family adds its factory here. */
const FACTORIES: ReadonlyArray<() => Driver> = [createOAuth2Driver, createRealDebridDriver, createCalComDriver, createAmpDriver];

/** Fresh instances of every driver (each keeps its own caches). */
function builtinDrivers(): Driver[] {
  return FACTORIES.map((make) => make());
}

let defaults: readonly Driver[] | undefined;

/** The driver called `name` (an account's `driver`), or undefined when there is none. */
export function getDriver(name: string, drivers: readonly Driver[] = (defaults ??= builtinDrivers())): Driver | undefined {
  return drivers.find((d) => d.name === name);
}
