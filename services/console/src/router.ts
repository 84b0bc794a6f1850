// router.ts - client routes on the History API (the gateway answers index.html for them).

import { signal } from '@preact/signals';

export const path = signal(location.pathname);

export function go(to: string): void {
    if (to !== location.pathname) {
        history.pushState(null, '', to);
    }
    path.value = to;
}

window.addEventListener('popstate', () => {
    path.value = location.pathname;
});
