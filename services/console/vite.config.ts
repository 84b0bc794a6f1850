// Staff console build: static files in dist/, served by the gateway nginx at /.
// No inline scripts or styles (the gateway's CSP is script-src 'self'; style-src 'self').
import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

export default defineConfig({
    plugins: [preact()],
    build: {
        outDir: 'dist',
        emptyOutDir: true,
        assetsInlineLimit: 0,
        modulePreload: { polyfill: false },
        sourcemap: false,
        target: 'es2022',
    },
});
