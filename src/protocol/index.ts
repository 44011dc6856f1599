export * from './api.js';
export * from './errors.js';
export * from './names.js';
export * from './routes.js';
