export * from './api.js';
export { ERROR_STATUS, EXIT } from './errors.js';
export * from './names.js';
export * from './routes.js';
