/**
 * Where tokend keeps its folders on each platform (docs/platforms.md): the pure rules of
 * `platformDirs`, for macOS and Windows too, which cannot run here.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { platformDirs } from '../src/protocol/paths.js';

describe('platformDirs', () => {
  it('Linux and the BSDs: the XDG base directories, each overridable, logs as state', () => {
    expect(platformDirs({ HOME: '/home/u' }, 'linux')).toEqual({
      config: path.join('/home/u', '.config', 'tokend'),
      data: path.join('/home/u', '.local', 'share', 'tokend'),
      state: path.join('/home/u', '.local', 'state', 'tokend'),
    });
    expect(platformDirs({ HOME: '/home/u', XDG_CONFIG_HOME: '/c', XDG_DATA_HOME: '/d', XDG_STATE_HOME: '/s' }, 'freebsd')).toEqual({
      config: path.join('/c', 'tokend'),
      data: path.join('/d', 'tokend'),
      state: path.join('/s', 'tokend'),
    });
  });

  it("macOS: ~/Library's Preferences, Application Support and Logs; XDG variables are not read", () => {
    expect(platformDirs({ HOME: '/Users/u', XDG_DATA_HOME: '/d' }, 'darwin')).toEqual({
      config: path.join('/Users/u', 'Library', 'Preferences', 'tokend'),
      data: path.join('/Users/u', 'Library', 'Application Support', 'tokend'),
      state: path.join('/Users/u', 'Library', 'Logs', 'tokend'),
    });
  });

  it('Windows: %APPDATA% for the config, %LOCALAPPDATA% for data and logs, from the profile when unset', () => {
    expect(platformDirs({ HOME: 'C:/Users/u', APPDATA: 'R', LOCALAPPDATA: 'L' }, 'win32')).toEqual({
      config: path.join('R', 'tokend', 'Config'),
      data: path.join('L', 'tokend', 'Data'),
      state: path.join('L', 'tokend', 'Log'),
    });
    expect(platformDirs({ HOME: 'C:/Users/u' }, 'win32').data).toBe(path.join('C:/Users/u', 'AppData', 'Local', 'tokend', 'Data'));
  });
});
