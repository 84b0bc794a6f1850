// idle.ts - the idle timeout as the server keeps it: a warning one minute before
// idle_expires_at, then sign-out. Every answered API call restarts the server's idle window,
// so it restarts the local deadline too.

const WARN_MS = 60_000;

export interface IdleWatch {
    /** The server's idle_expires_at as just read from GET /auth/session. */
    reset(idleExpiresAt: string): void;
    /** An API call was answered: the window starts again. */
    touch(): void;
    stop(): void;
}

export function idleWatch(onWarn: (warn: boolean) => void, onExpire: () => void): IdleWatch {
    let windowMs = 0;
    let deadline = 0;
    let warned = false;
    const timer = setInterval(() => {
        if (deadline === 0) {
            return;
        }
        const left = deadline - Date.now();
        if (left <= 0) {
            deadline = 0;
            onExpire();
        } else if ((left <= WARN_MS) !== warned) {
            warned = left <= WARN_MS;
            onWarn(warned);
        }
    }, 1000);
    return {
        reset(idleExpiresAt) {
            deadline = Date.parse(idleExpiresAt);
            windowMs = Math.max(deadline - Date.now(), 0);
        },
        touch() {
            if (deadline !== 0 && windowMs > 0) {
                deadline = Date.now() + windowMs;
            }
        },
        stop() {
            clearInterval(timer);
            deadline = 0;
        },
    };
}
