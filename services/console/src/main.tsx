// main.tsx - entry point of the staff console.

import { render } from 'preact';
import 'uplot/dist/uPlot.min.css';
import { App } from './app';
import { lang } from './i18n';
import './style.css';

document.documentElement.lang = lang.value;
render(<App />, document.getElementById('app') as HTMLElement);
