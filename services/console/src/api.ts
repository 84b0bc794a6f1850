// api.ts - calls to the gateway's /api/v1 routes with the bearer token.
//
// The token lives in memory and in sessionStorage (so a reload keeps the tab signed in),
// never in localStorage or a URL; clearToken() forgets both. Errors are RFC 9457
// problem+json bodies, turned into ApiError (status, code, field errors).

const TOKEN_KEY = 'phr.console.token';

let token: string | null = sessionStorage.getItem(TOKEN_KEY);
let activity: (() => void) | null = null;
let expired: (() => void) | null = null;

export interface FieldError {
    field: string;
    message: string;
}

export class ApiError extends Error {
    constructor(
        readonly status: number,
        readonly code: string,
        readonly errors: FieldError[] = [],
        readonly detail = '',
    ) {
        super(`${status} ${code}`);
    }
}

export function getToken(): string | null {
    return token;
}

export function setToken(t: string): void {
    token = t;
    sessionStorage.setItem(TOKEN_KEY, t);
}

export function clearToken(): void {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
}

/** Called after every answered request that carried the token (the idle window restarts). */
export function onActivity(fn: (() => void) | null): void {
    activity = fn;
}

/** Called when the server no longer knows the token (401 unauthenticated / session_expired). */
export function onExpired(fn: (() => void) | null): void {
    expired = fn;
}

interface Problem {
    code?: string;
    errors?: FieldError[];
    detail?: string;
}

type Query = Record<string, string | number | undefined | null>;

export function withQuery(path: string, q: Query): string {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) {
        if (v !== undefined && v !== null && v !== '') {
            p.set(k, String(v));
        }
    }
    const s = p.toString();
    return s ? `${path}?${s}` : path;
}

/** One request; a non-2xx answer is thrown as ApiError. */
async function send(method: string, path: string, body?: unknown): Promise<Response> {
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (token) {
        headers.Authorization = `Bearer ${token}`;
    }
    if (body !== undefined) {
        headers['Content-Type'] = 'application/json';
    }
    let res: Response;
    try {
        res = await fetch(`/api/v1${path}`, {
            method,
            headers,
            body: body === undefined ? undefined : JSON.stringify(body),
            credentials: 'omit',
            cache: 'no-store',
        });
    } catch {
        throw new ApiError(0, 'network_error');
    }
    if (token && res.status !== 401 && activity) {
        activity();
    }
    if (!res.ok) {
        const p = (parse(await res.text()) ?? {}) as Problem;
        const sent = headers.Authorization !== undefined;
        if (sent && res.status === 401 && /^(unauthenticated|session_expired)$/.test(p.code ?? '')) {
            expired?.();
        }
        throw new ApiError(res.status, p.code ?? `http_${res.status}`, p.errors ?? [], p.detail);
    }
    return res;
}

function parse(text: string): unknown {
    try {
        return text ? JSON.parse(text) : null;
    } catch {
        return null;
    }
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await send(method, path, body);
    return parse(await res.text()) as T;
}

/** A GET whose body is a file (e.g. JSON Lines), read whole with the bearer header. */
export async function apiBlob(path: string): Promise<Blob> {
    return (await send('GET', path)).blob();
}
