import { describe, expect, it } from 'vitest';
import { ProxyPathError, resolveProxyTarget, resolveProxyUrl } from '../src/daemon/proxy-path.js';

describe('the proxy target, checked and parsed once per api_base and path', () => {
  it('hands the same checked target to every request for a path, with its origin and path read off', () => {
    const first = resolveProxyTarget('https://api.example.test/rest/1.0', 'item/7', '?full=1');
    expect(first).toEqual({
      url: first.url,
      origin: 'https://api.example.test',
      path: '/rest/1.0/item/7?full=1',
      protocol: 'https:',
      loopback: false,
    });
    expect(resolveProxyTarget('http://127.0.0.1:8080/api', 'item', '')).toMatchObject({ protocol: 'http:', loopback: true });
    expect(resolveProxyTarget('http://localhost./api', 'item', '')).toMatchObject({ protocol: 'http:', loopback: true });
    expect(resolveProxyTarget('http://api.example.test/api', 'item', '')).toMatchObject({ protocol: 'http:', loopback: false });
    expect(first.url.href).toBe('https://api.example.test/rest/1.0/item/7?full=1');
    expect(resolveProxyTarget('https://api.example.test/rest/1.0', 'item/7', '?full=1')).toBe(first);
    expect(resolveProxyUrl('https://api.example.test/rest/1.0', 'item/7', '?full=1')).toBe(first.url);
  });

  it('keeps targets apart by api_base, and by path and query', () => {
    const a = resolveProxyTarget('https://a.example.test/v1', 'item', '');
    const b = resolveProxyTarget('https://b.example.test/v2', 'item', '');
    expect([a.origin, a.path]).toEqual(['https://a.example.test', '/v1/item']);
    expect([b.origin, b.path]).toEqual(['https://b.example.test', '/v2/item']);
    expect(resolveProxyTarget('https://a.example.test/v1', 'item', '?x=1').path).toBe('/v1/item?x=1');
    expect(resolveProxyTarget('https://a.example.test/v1', 'item/', '').path).toBe('/v1/item/');
  });

  it('refuses a bad path every time, also after good paths of the same api_base were kept', () => {
    resolveProxyTarget('https://api.example.test/rest', 'ok', '');
    for (let i = 0; i < 2; i++) {
      expect(() => resolveProxyTarget('https://api.example.test/rest', '..', '')).toThrow(ProxyPathError);
      expect(() => resolveProxyTarget('https://api.example.test/rest', 'a%2fb', '')).toThrow(ProxyPathError);
    }
  });

  it('stays bounded and right when a caller walks more paths than it keeps', () => {
    const base = 'https://walk.example.test/api';
    const first = resolveProxyTarget(base, 'p0', '');
    for (let i = 0; i < 2500; i++) expect(resolveProxyTarget(base, `p${i}`, '').path).toBe(`/api/p${i}`);
    const again = resolveProxyTarget(base, 'p0', '');
    expect(again).toEqual(first);
  });
});
