/** Small DOM builders: the views make plain elements (no framework on top of Lumino). */

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | undefined | null>;

/** An element with attributes (`on*` keys become listeners) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value as EventListener);
    } else if (key === 'class') {
      el.className = String(value);
    } else if (key === 'value' && 'value' in el) {
      (el as unknown as { value: string }).value = String(value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** A small button. */
export function button(label: string, onClick: () => void, opts: { danger?: boolean; title?: string; testid?: string } = {}): HTMLButtonElement {
  return h('button', {
    class: opts.danger ? 'llmos-button llmos-danger' : 'llmos-button',
    title: opts.title,
    'data-testid': opts.testid,
    onclick: (e: Event) => {
      e.stopPropagation();
      onClick();
    },
  }, label);
}

/** A table of `rows` with header `columns`; `cells(row)` gives each row's cells. */
export function table<T>(
  columns: string[],
  rows: T[],
  cells: (row: T) => Child[],
  opts: { rowAttrs?: (row: T) => Attrs; testid?: string } = {},
): HTMLTableElement {
  return h(
    'table',
    { class: 'llmos-table', 'data-testid': opts.testid },
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', {}, c)))),
    h('tbody', {}, rows.map((r) => h('tr', opts.rowAttrs?.(r) ?? {}, cells(r).map((c) => h('td', {}, c))))),
  );
}

/** A progress bar at done/total (an indeterminate empty bar without a total). */
export function progress(done: number, total: number | null | undefined): HTMLElement {
  const pct = total ? Math.min(100, Math.round((100 * done) / total)) : 0;
  return h('div', { class: 'llmos-progress', role: 'progressbar', 'aria-valuenow': pct, title: total ? `${done}/${total}` : `${done}` },
    h('div', { style: `width: ${pct}%` }));
}

/** Bytes as B/KB/MB/GB. */
export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** The message to show for a failed call. */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A value as YAML-like text (for task specs: readable, and what `llmos task show` prints). */
export function yaml(value: unknown, indent = ''): string {
  if (value === null || value === undefined) return 'null';
  if (Array.isArray(value)) {
    if (!value.length) return '[]';
    return value.map((v) => `\n${indent}- ${yaml(v, indent + '  ').replace(/^\n\s*/, '')}`).join('');
  }
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>);
    if (!entries.length) return '{}';
    return entries
      .map(([k, v]) => {
        const inner = yaml(v, indent + '  ');
        const block = typeof v === 'object' && v !== null && inner !== '[]' && inner !== '{}';
        return `\n${indent}${k}:${block ? '' : ' '}${inner}`;
      })
      .join('');
  }
  if (typeof value === 'string' && value.includes('\n')) {
    return `|\n${value.replace(/\n$/, '').split('\n').map((l) => indent + l).join('\n')}`;
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** Replace `node`'s children with `children`, skipping empty ones. */
export function fill(node: HTMLElement, ...children: Child[]): void {
  node.replaceChildren(...children.filter((c): c is Node | string | number => c !== null && c !== undefined && c !== false).map((c) => (c instanceof Node ? c : String(c))));
}
