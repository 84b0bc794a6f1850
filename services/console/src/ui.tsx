// ui.tsx - small shared pieces: error box, labelled fields, confirmation, link.

import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { ApiError } from './api';
import { errText, t } from './i18n';
import { go } from './router';

/** The words for an error thrown by api(). */
export function describe(e: unknown): string {
    if (e instanceof ApiError) {
        const fields = e.errors.map((f) => `${f.field}: ${f.message}`).join(' / ');
        return fields ? `${errText(e.code)} (${fields})` : errText(e.code);
    }
    return t('err_generic');
}

export function ErrorBox({ error }: { error: unknown }) {
    if (!error) {
        return null;
    }
    return (
        <p class="error" role="alert">
            {describe(error)}
        </p>
    );
}

export function Notice({ text }: { text: string }) {
    return text ? (
        <p class="notice" role="status">
            {text}
        </p>
    ) : null;
}

interface FieldProps {
    id: string;
    label: string;
    value: string;
    onInput: (v: string) => void;
    type?: string;
    required?: boolean;
    autocomplete?: string;
    inputMode?: 'numeric' | 'text' | 'decimal' | 'email';
    min?: number | null;
    max?: number | null;
    step?: string;
    pattern?: string;
}

export function Field(p: FieldProps) {
    return (
        <div class="field">
            <label for={p.id}>{p.label}</label>
            <input
                id={p.id}
                name={p.id}
                type={p.type ?? 'text'}
                value={p.value}
                required={p.required}
                autocomplete={p.autocomplete}
                inputMode={p.inputMode}
                min={p.min ?? undefined}
                max={p.max ?? undefined}
                step={p.step}
                pattern={p.pattern}
                onInput={(e) => p.onInput((e.target as HTMLInputElement).value)}
            />
        </div>
    );
}

/** A button that asks "are you sure?" inline before running |action|. */
export function ConfirmButton(p: { label: string; action: () => Promise<void> | void; name?: string }) {
    const [asking, setAsking] = useState(false);
    if (!asking) {
        return (
            <button type="button" class="danger" aria-label={p.name} onClick={() => setAsking(true)}>
                {p.label}
            </button>
        );
    }
    return (
        <span class="confirm" role="alertdialog" aria-label={`${p.name ?? p.label}: ${t('confirm_q')}`}>
            <span>{t('confirm_q')}</span>
            <button
                type="button"
                class="danger"
                autoFocus
                onClick={async () => {
                    setAsking(false);
                    await p.action();
                }}
            >
                {p.label}
            </button>
            <button type="button" onClick={() => setAsking(false)}>
                {t('keep')}
            </button>
        </span>
    );
}

export function Link(p: { to: string; children: ComponentChildren; class?: string }) {
    return (
        <a
            href={p.to}
            class={p.class}
            onClick={(e) => {
                if (!e.ctrlKey && !e.metaKey && !e.shiftKey) {
                    e.preventDefault();
                    go(p.to);
                }
            }}
        >
            {p.children}
        </a>
    );
}
