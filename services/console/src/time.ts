// time.ts - dates and times shown in JST (Asia/Tokyo), whatever the browser's zone.

const fmt = new Intl.DateTimeFormat('ja-JP', {
    timeZone: 'Asia/Tokyo',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    hour12: false,
});

const dayFmt = new Intl.DateTimeFormat('ja-JP', {
    timeZone: 'Asia/Tokyo',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
});

/** "2026/11/20 07:30 JST"; "-" for null. */
export function jst(iso: string | null | undefined): string {
    if (!iso) {
        return '-';
    }
    return `${fmt.format(new Date(iso))} JST`;
}

export function jstDay(iso: string): string {
    return dayFmt.format(new Date(iso));
}

/** The JST wall time of |d| as "YYYY-MM-DDTHH:MM" (for datetime-local inputs). */
export function jstInput(d: Date): string {
    return new Date(d.getTime() + 9 * 3600e3).toISOString().slice(0, 16);
}

/** A datetime-local value read as JST, in RFC 3339 with +09:00. */
export function fromJstInput(v: string): string {
    return `${v}:00+09:00`;
}
