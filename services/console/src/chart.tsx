// chart.tsx - blood pressure over time (uPlot): systolic and diastolic bucket means
// together, with the same points as a data table for screen readers and tests.

import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { t } from './i18n';
import { jstDay } from './time';
import type { Summary } from './types';

const dayFmt = new Intl.DateTimeFormat('ja-JP', { timeZone: 'Asia/Tokyo', month: 'numeric', day: 'numeric' });

/** Seconds since the epoch as a JST "11/20". */
function shortDay(ts: number): string {
    return dayFmt.format(new Date(ts * 1000));
}

/** At most |max| of |xs|, evenly spaced, the last one kept. */
function thin(xs: number[], max: number): number[] {
    if (xs.length <= max || max < 2) {
        return xs;
    }
    const step = Math.ceil(xs.length / max);
    return xs.filter((_x, i) => (xs.length - 1 - i) % step === 0);
}

export function BpChart({ summary }: { summary: Summary }) {
    const box = useRef<HTMLDivElement>(null);
    const items = summary.items.filter((b) => b.values.systolic && b.values.diastolic);

    useEffect(() => {
        const el = box.current;
        if (!el || items.length === 0) {
            return undefined;
        }
        const data: uPlot.AlignedData = [
            items.map((b) => Date.parse(b.start) / 1000),
            items.map((b) => b.values.systolic.mean),
            items.map((b) => b.values.diastolic.mean),
        ];
        const plot = new uPlot(
            {
                width: Math.max(el.clientWidth, 300),
                height: 280,
                tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Asia/Tokyo'),
                scales: { y: { range: [40, 200] } },
                series: [
                    { label: t('period'), value: (_u, v) => (v == null ? '-' : shortDay(v)) },
                    { label: t('systolic'), stroke: '#b3261e', width: 2, points: { size: 7 } },
                    { label: t('diastolic'), stroke: '#0b57d0', width: 2, points: { size: 7 } },
                ],
                axes: [
                    {
                        // a tick at each point, thinned to one per ~80 px
                        splits: (u) => thin(u.data[0] as number[], Math.floor(u.bbox.width / devicePixelRatio / 80)),
                        values: (_u, splits) => splits.map(shortDay),
                    },
                    { label: 'mmHg' },
                ],
            },
            data,
            el,
        );
        const ro = new ResizeObserver(() => plot.setSize({ width: Math.max(el.clientWidth, 300), height: 280 }));
        ro.observe(el);
        return () => {
            ro.disconnect();
            plot.destroy();
        };
    }, [summary]);

    if (items.length === 0) {
        return <p>{t('no_data')}</p>;
    }
    return (
        <figure class="chart">
            <div ref={box} class="chart-box" data-points={items.length} role="img"
                aria-label={t('bp_chart')} />
            <figcaption>
                <details>
                    <summary>{t('bp_chart')}</summary>
                    <table class="chart-data">
                        <thead>
                            <tr>
                                <th scope="col">{t('period')}</th>
                                <th scope="col">{t('systolic')}</th>
                                <th scope="col">{t('diastolic')}</th>
                            </tr>
                        </thead>
                        <tbody>
                            {items.map((b) => (
                                <tr>
                                    <td>{jstDay(b.start)}</td>
                                    <td>{Math.round(b.values.systolic.mean)}</td>
                                    <td>{Math.round(b.values.diastolic.mean)}</td>
                                </tr>
                            ))}
                        </tbody>
                    </table>
                </details>
            </figcaption>
        </figure>
    );
}
