// format.ts - record values in words ("132/84 mmHg", "6.5 %").

import type { Values } from './types';

const UNITS: Record<string, string> = {
    blood_pressure: 'mmHg',
    pulse: '/min',
    body_weight: 'kg',
    blood_glucose: 'mg/dL',
    hba1c: '%',
    steps: '',
    body_temperature: '℃',
    spo2: '%',
};

export function valuesText(type: string, v: Values): string {
    if (type === 'blood_pressure') {
        const pulse = v.pulse !== undefined ? ` (${v.pulse}/min)` : '';
        return `${v.systolic}/${v.diastolic} mmHg${pulse}`;
    }
    if (v.value !== undefined) {
        const unit = UNITS[type] ?? '';
        const rest = Object.entries(v)
            .filter(([k]) => k !== 'value')
            .map(([k, x]) => `${k}: ${x}`)
            .join(', ');
        return `${v.value}${unit ? ` ${unit}` : ''}${rest ? ` (${rest})` : ''}`;
    }
    return Object.entries(v)
        .map(([k, x]) => `${k}: ${x}`)
        .join(', ');
}
