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

/** The current JST month, "YYYY-MM" (for month inputs). */
export function jstMonthNow(): string {
    return jstInput(new Date()).slice(0, 7);
}

/** A date input's "YYYY-MM-DD" as the start of that JST day, or of the day after (|next|). */
export function jstDayBound(v: string, next = false): string {
    const d = new Date(`${v}T00:00:00+09:00`);
    return next ? new Date(d.getTime() + 86400e3).toISOString() : d.toISOString();
}
