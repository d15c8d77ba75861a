// Kiln's log viewer: a window onto a log of any size. Only the lines on screen are in the page; they are
// fetched in blocks of BLOCK lines from /api/v2/logs/{id}/contents and kept in a cache of at most CACHE blocks.
// A running log grows through the events stream (which carries line counts, never text); search runs on the
// server. Line numbers are permalinks: #L12, #L10-L20 (click, shift-click).

const BLOCK = 1000; // lines per fetched block
const CACHE = 64; // blocks kept (least recently used evicted)
const OVER = 20; // rows rendered above and below the screen
const MAXH = 15e6; // tallest spacer in px (browsers cap element heights near 16.7M or 33.5M px)
const FETCHES = 4; // block fetches in flight at most

const main = document.getElementById('log');
const $ = (id) => document.getElementById(id);
const el = (tag, cls) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  return e;
};

if (main) start();

function start() {
  const id = main.dataset.logid;
  const stdio = main.dataset.type === 's';
  const api = `/api/v2/logs/${id}`;
  let n = Number(main.dataset.lines);
  let complete = main.dataset.complete === 'true';
  const blocks = new Map(); // block index -> array of lines (LRU by insertion order)
  const pending = new Set();
  let follow = false;
  let sel = null; // [first, last], 1-based
  let anchor = 0; // 1-based, for shift-click
  let hit = -1; // 0-based line of the current search match
  let expectTop = -1; // the scrollTop this script set last
  let frame = 0;
  let failed = '';
  let marked = false;
  let made = new Map(); // line index -> {el, loaded}: the rows on screen
  const remake = () => {
    made = new Map();
    schedule();
  };
  const status = (text) => {
    $('log-found').textContent = text;
  };

  main.replaceChildren();
  main.setAttribute('role', 'region');
  main.setAttribute('aria-label', 'Log lines');
  main.tabIndex = 0;
  const spacer = el('div', 'spacer');
  const rows = el('div', 'rows');
  spacer.append(rows);
  main.append(spacer);
  $('log-tools').hidden = false;

  const probe = el('div', 'l o');
  probe.textContent = 'x';
  rows.append(probe);
  const ROW = probe.getBoundingClientRect().height || 18;
  probe.remove();

  // Geometry: the spacer is n × ROW tall up to MAXH; beyond, scroll positions map to lines proportionally.
  const view = () => main.clientHeight;
  const height = () => Math.min(n * ROW, MAXH);
  const scaled = () => n * ROW > MAXH;
  const lastTop = () => Math.max(0, n - view() / ROW); // the top line when at the end
  function topLine() {
    if (!scaled()) return main.scrollTop / ROW;
    const room = height() - view();
    return room > 0 ? (main.scrollTop / room) * lastTop() : 0;
  }
  function setTop(px) {
    main.scrollTop = px;
    expectTop = main.scrollTop;
  }
  function toLine(f) {
    f = Math.max(0, Math.min(f, lastTop()));
    spacer.style.height = `${height()}px`;
    setTop(scaled() ? (f / Math.max(1, lastTop())) * (height() - view()) : f * ROW);
    schedule();
  }
  const centre = (i) => toLine(i - view() / ROW / 2 + 0.5);
  const atEnd = () => main.scrollTop + view() >= main.scrollHeight - 2;

  function schedule() {
    if (!frame) frame = requestAnimationFrame(render);
  }

  function render() {
    frame = 0;
    spacer.style.height = `${height()}px`;
    if (follow) setTop(main.scrollHeight - view());
    const f = topLine();
    const first = Math.max(0, Math.floor(f) - OVER);
    const end = Math.min(n, Math.ceil(f + view() / ROW) + OVER);
    rows.style.transform = `translateY(${main.scrollTop - (f - first) * ROW}px)`;
    // Rows already on screen are kept (a followed log mostly shifts by a few lines): only new ones are made.
    const out = document.createDocumentFragment();
    const next = new Map();
    let shown = 0;
    for (let i = first; i < end; i++) {
      const loaded = line(i) !== undefined;
      let r = made.get(i);
      if (!r || r.loaded !== loaded) r = { el: row(i), loaded };
      next.set(i, r);
      if (loaded) shown++;
      out.append(r.el);
    }
    made = next;
    rows.replaceChildren(out);
    // For measurements (bench/): when the first lines came on screen.
    if (shown && !marked) {
      marked = true;
      performance.mark('kiln-log-rows');
    }
    for (let b = Math.floor(first / BLOCK); b * BLOCK < end; b++) load(b);
  }

  function line(i) {
    const b = Math.floor(i / BLOCK);
    const lines = blocks.get(b);
    return lines ? lines[i - b * BLOCK] : undefined;
  }

  function row(i) {
    const text = line(i);
    const r = el('div', 'l');
    const a = el('a', 'n');
    a.href = `#L${i + 1}`;
    a.textContent = i + 1;
    const t = el('span', 't');
    let kind = 'o';
    if (text === undefined) r.classList.add('wait');
    else if (stdio && text.length) {
      kind = 'eh'.includes(text[0]) ? text[0] : 'o';
      ansi(text.slice(1), t);
    } else ansi(text, t);
    r.classList.add(kind);
    if (sel && i + 1 >= sel[0] && i + 1 <= sel[1]) r.classList.add('sel');
    if (i === hit) r.classList.add('hit');
    r.append(a, t);
    return r;
  }

  // Fetches what block b lacks (all of it, or the lines a running log added since).
  function load(b) {
    const first = b * BLOCK;
    const want = Math.min(BLOCK, n - first);
    const have = blocks.get(b);
    if (have) {
      blocks.delete(b);
      blocks.set(b, have);
    }
    const from = have ? have.length : 0;
    if (want <= from || pending.has(b) || pending.size >= FETCHES) return;
    pending.add(b);
    fetch(`${api}/contents?offset=${first + from}&limit=${want - from}`)
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`${r.status} ${r.statusText}`))))
      .then((j) => {
        const c = j.logchunks[0].content;
        const got = c ? c.slice(0, -1).split('\n') : [];
        const cur = blocks.get(b) || [];
        if (cur.length !== from) return;
        blocks.delete(b);
        blocks.set(b, from ? cur.concat(got) : got);
        while (blocks.size > CACHE) blocks.delete(blocks.keys().next().value);
        failed = '';
      })
      .catch((e) => {
        failed = `Could not read lines: ${e.message}`;
        status(failed);
      })
      .finally(() => {
        pending.delete(b);
        if (!failed) schedule();
      });
  }

  function setFollow(on) {
    follow = on;
    $('log-follow').setAttribute('aria-pressed', String(on));
    if (on) schedule();
  }

  function grow(count, done) {
    if (count > n) {
      n = count;
      $('log-count').textContent = n;
      schedule();
    }
    if (done && !complete) {
      complete = true;
      $('log-state').textContent = 'complete';
    }
  }

  // A running log: the events stream says how many lines it has; the lines are fetched as they come on screen.
  function live() {
    const es = new EventSource(`/api/v2/events?path=logs/${id}/*`);
    const refresh = () =>
      fetch(api)
        .then((r) => r.json())
        .then((j) => {
          const l = j.logs && j.logs[0];
          if (l) grow(l.num_lines, l.complete);
          if (complete) es.close();
        })
        .catch(() => {});
    es.addEventListener('log_appended', (e) => {
      const d = JSON.parse(e.data);
      grow(d.first_line + d.count, false);
    });
    es.addEventListener('log_finished', (e) => {
      grow(JSON.parse(e.data).num_lines, true);
      es.close();
    });
    es.addEventListener('reset', refresh);
    es.addEventListener('open', refresh);
    window.addEventListener('pagehide', () => es.close());
  }

  // Permalinks.
  function fromHash() {
    const m = /^#L(\d+)(?:-L?(\d+))?$/.exec(location.hash);
    if (!m) return false;
    const a = Number(m[1]);
    const b = m[2] ? Number(m[2]) : a;
    sel = [Math.min(a, b), Math.max(a, b)];
    setFollow(false);
    centre(sel[0] - 1);
    remake();
    return true;
  }
  rows.addEventListener('click', (e) => {
    const a = e.target.closest('a.n');
    if (!a) return;
    e.preventDefault();
    const i = Number(a.textContent);
    if (e.shiftKey && anchor) sel = [Math.min(anchor, i), Math.max(anchor, i)];
    else {
      anchor = i;
      sel = [i, i];
    }
    history.pushState(null, '', sel[0] === sel[1] ? `#L${i}` : `#L${sel[0]}-L${sel[1]}`);
    remake();
  });
  window.addEventListener('hashchange', fromHash);
  window.addEventListener('popstate', fromHash);

  // Scrolling by the reader stops following; reaching the end of a running log again resumes it.
  main.addEventListener(
    'scroll',
    () => {
      if (Math.abs(main.scrollTop - expectTop) > 1) {
        if (follow && !atEnd()) setFollow(false);
        else if (!follow && !complete && atEnd()) setFollow(true);
      }
      schedule();
    },
    { passive: true },
  );
  main.addEventListener('wheel', (e) => e.deltaY < 0 && follow && setFollow(false), { passive: true });
  document.addEventListener('keydown', (e) => {
    if (e.target.closest && e.target.closest('input, textarea, select')) return;
    if (e.key === 'End') {
      e.preventDefault();
      toEnd();
    } else if (e.key === 'Home') {
      e.preventDefault();
      toTop();
    } else if (e.key === 'PageUp' || e.key === 'ArrowUp') {
      if (follow) setFollow(false);
    } else if (e.key === '/' && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      $('log-q').focus();
    }
  });
  function toEnd() {
    setFollow(true);
    toLine(n);
  }
  function toTop() {
    setFollow(false);
    toLine(0);
  }
  $('log-end').addEventListener('click', toEnd);
  $('log-top').addEventListener('click', toTop);
  $('log-follow').addEventListener('click', () => (follow ? setFollow(false) : toEnd()));
  new ResizeObserver(schedule).observe(main);

  // Search, on the server: next or previous match from the current one (or from the screen's top line).
  let generation = 0;
  async function find(back) {
    const q = $('log-q').value;
    if (!q) return;
    const mine = ++generation;
    let from = hit >= 0 ? (back ? hit : hit + 1) : Math.floor(topLine());
    status('Searching…');
    for (;;) {
      const p = new URLSearchParams({
        q,
        regex: $('log-regex').checked ? 1 : 0,
        case: $('log-case').checked ? 1 : 0,
        from,
        limit: 1,
        back: back ? 1 : 0,
      });
      let j;
      try {
        const r = await fetch(`${api}/search?${p}`);
        j = await r.json();
        if (!r.ok) throw new Error(j.error || r.statusText);
      } catch (e) {
        if (mine === generation) status(e.message);
        return;
      }
      if (mine !== generation) return;
      if (j.matches.length) {
        hit = j.matches[0];
        setFollow(false);
        centre(hit);
        remake();
        status(`Line ${hit + 1}`);
        return;
      }
      if (j.meta.next_from === undefined) {
        status(hit >= 0 ? `No more matches ${back ? 'before' : 'after'} line ${hit + 1}` : 'No match');
        return;
      }
      from = j.meta.next_from;
      status(`Searching… line ${from + 1}`);
    }
  }
  $('log-search').addEventListener('submit', (e) => {
    e.preventDefault();
    find(false);
  });
  $('log-prev').addEventListener('click', () => find(true));
  for (const input of ['log-q', 'log-regex', 'log-case']) {
    $(input).addEventListener('input', () => {
      hit = -1;
      remake();
    });
  }

  spacer.style.height = `${height()}px`;
  if (!fromHash() && !complete) setFollow(true);
  schedule();
  if (!complete) live();
}

// ANSI SGR colours and styles: 16 colours as classes (the palette in log.css), 256 and true colour as styles.
const SGR = /\x1b\[([0-9;:]*)m/;
const OTHER = /\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-?]*[ -/]*[@-ln-~]|\x1b[@-Z\\-_]/g;

function ansi(text, into) {
  const cr = text.replace(/\r+$/, '').lastIndexOf('\r');
  if (cr >= 0) text = text.slice(cr + 1);
  if (!text.includes('\x1b')) {
    into.textContent = text;
    return;
  }
  const parts = text.replace(OTHER, '').split(SGR);
  let st = {};
  for (let k = 0; k < parts.length; k++) {
    if (k % 2) st = sgr(parts[k], st);
    else if (parts[k]) into.append(styled(parts[k], st));
  }
}

function sgr(params, old) {
  const st = { ...old };
  const c = params.split(/[;:]/).map((x) => Number(x) || 0);
  for (let k = 0; k < c.length; k++) {
    const x = c[k];
    if (x === 0) for (const key of Object.keys(st)) delete st[key];
    else if (x === 1) st.b = 1;
    else if (x === 2) st.d = 1;
    else if (x === 3) st.i = 1;
    else if (x === 4) st.u = 1;
    else if (x === 22) st.b = st.d = 0;
    else if (x === 23) st.i = 0;
    else if (x === 24) st.u = 0;
    else if (x >= 30 && x <= 37) st.f = x - 30;
    else if (x >= 90 && x <= 97) st.f = x - 82;
    else if (x === 39) delete st.f;
    else if (x >= 40 && x <= 47) st.g = x - 40;
    else if (x >= 100 && x <= 107) st.g = x - 92;
    else if (x === 49) delete st.g;
    else if (x === 38 || x === 48) {
      let colour;
      if (c[k + 1] === 5) {
        colour = c[k + 2];
        k += 2;
      } else if (c[k + 1] === 2) {
        colour = `rgb(${c[k + 2]},${c[k + 3]},${c[k + 4]})`;
        k += 4;
      }
      if (colour !== undefined) st[x === 38 ? 'f' : 'g'] = colour;
    }
  }
  return st;
}

const LEVELS = [0, 95, 135, 175, 215, 255];
function rgb(n) {
  if (n < 232) {
    n -= 16;
    return `rgb(${LEVELS[Math.floor(n / 36) % 6]},${LEVELS[Math.floor(n / 6) % 6]},${LEVELS[n % 6]})`;
  }
  const v = 8 + (n - 232) * 10;
  return `rgb(${v},${v},${v})`;
}

function styled(text, st) {
  const cls = [];
  if (st.b) cls.push('b');
  if (st.d) cls.push('d');
  if (st.i) cls.push('i');
  if (st.u) cls.push('u');
  const s = el('span');
  for (const [key, prop] of [
    ['f', 'color'],
    ['g', 'backgroundColor'],
  ]) {
    const v = st[key];
    if (typeof v === 'number' && v < 16) cls.push(`${key}${v}`);
    else if (typeof v === 'number') s.style[prop] = rgb(Math.min(v, 255));
    else if (v) s.style[prop] = v;
  }
  if (!cls.length && !s.style.length) return document.createTextNode(text);
  s.className = cls.join(' ');
  s.textContent = text;
  return s;
}
