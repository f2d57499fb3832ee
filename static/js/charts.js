/* Tally charts: draws every <canvas data-chart="ID"> with Chart.js from the
 * JSON in the element with that id (Django's `json_script`). No build step:
 * load Chart.js, the date adapter (only for time axes) and this file with
 * plain <script defer>, in that order.
 *
 *   {{ chart|json_script:"cost-by-day" }}
 *   <div class="chart"><canvas id="cost-chart" data-chart="cost-by-day" role="img"
 *        aria-label="Cost per day by service type"></canvas></div>
 *   <ul class="legend" data-legend-for="cost-chart cost-doughnut" aria-label="Service types"></ul>
 *
 * The JSON:
 *
 *   {
 *     "kind": "stacked-bar" | "bar" | "line" | "doughnut",
 *     "labels": ["2025-03-01", ...],   // x values; for a doughnut, the slice names
 *     "datasets": [                    // bar and line: one per series
 *       {"label": "Platform", "colour": "#2563eb", "data": [12, "3.50", null, ...]}
 *     ],                               // doughnut: one dataset, "colours": ["#..", ...] one per slice
 *     "x": "category" | "time",        // default "category": labels are shown as they are
 *     "unit": "day",                   // time axis only: minute | hour | day | week | month
 *     "horizontal": false,             // bar kinds: bars along the y axis (top-N lists)
 *     "area": false,                   // line: fill under each line
 *     "money": true, "currency": "USD",// values are money (decimal strings are fine)
 *     "suffix": "GB-h",                // otherwise an optional unit after each value
 *     "integer": true,                 // whole numbers only: no fractional ticks (counts of people)
 *     "centre_label": "Total",         // doughnut: caption above the total in the hole ("" for none)
 *     "legend": false,                 // never show Chart.js's own legend
 *     "empty_text": "No requests yet", // shown when no visible value is non-zero
 *     "title": "Cost per day"          // aria-label when the canvas has none
 *   }
 *
 * Only "kind" and "labels"/"datasets" are required. Bars and lines without a
 * "colour" (and slices without "colours") take one from a fixed palette.
 *
 * Time labels are wall-clock times in the org's time zone *without* an offset
 * ("2025-03-01" or "2025-03-01T13:00"): the browser reads them as local times
 * and so shows the org's days and hours whatever zone the viewer is in.
 *
 * Money is shown as dashboards/templatetags/tally.py shows it ("$1,234.56",
 * "€1,234.56", "1,234.56 GBP", "<$0.01"); other numbers compactly ("1.2M").
 *
 * A legend list `<ul data-legend-for="a b">` (canvas ids, or data-chart ids)
 * gets one toggle button per series; a press hides or shows that series (or
 * slice, matched by label) in every chart it names. Charts without such a
 * legend and with several series get Chart.js's own legend.
 *
 * Content swapped in by htmx is drawn after `htmx:afterSettle`; charts whose
 * canvas or data left the page are destroyed. `window.TallyCharts` exposes
 * init() and the formatters for other scripts (Live Mode).
 */
(function () {
  "use strict";

  const Chart = window.Chart;
  if (!Chart) {
    console.error("charts.js: Chart.js is not loaded");
    return;
  }

  // ---- Formatting (mirrors dashboards/templatetags/tally.py) -----------------

  const CURRENCY_SYMBOLS = { USD: "$", EUR: "€" };
  const COMPACT_UNITS = [
    [1e3, "K"],
    [1e6, "M"],
    [1e9, "B"],
    [1e12, "T"],
  ];

  // Round half away from zero at `digits` decimals, shifting in decimal notation so 1.005 -> 1.01.
  function roundHalfUp(value, digits) {
    const shifted = Math.round(Number(Math.abs(value) + "e" + digits));
    const result = Number(shifted + "e-" + digits);
    const rounded = Number.isFinite(result) ? result : Math.round(Math.abs(value) * 10 ** digits) / 10 ** digits;
    return value < 0 ? -rounded : rounded;
  }

  function grouped(value, decimals) {
    return value.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
  }

  function thousands(value) {
    return Number(value).toLocaleString("en-US", { maximumFractionDigits: 20 });
  }

  function compact(value) {
    const n = Math.abs(Number(value));
    if (!Number.isFinite(n)) return "";
    let scaled = roundHalfUp(n, 1);
    let suffix = "";
    for (const [threshold, unit] of COMPACT_UNITS) {
      if (scaled < 1000) break;
      scaled = roundHalfUp(n / threshold, 1);
      suffix = unit;
    }
    if (scaled === 0) return "0";
    return (value < 0 ? "-" : "") + scaled.toLocaleString("en-US", { maximumFractionDigits: 1 }) + suffix;
  }

  function withCurrency(amount, currency) {
    const symbol = CURRENCY_SYMBOLS[currency];
    return symbol ? symbol + amount : amount + " " + currency;
  }

  function money(value, currency) {
    const code = String(currency || "USD").toUpperCase();
    const n = Math.abs(Number(value));
    if (!Number.isFinite(n)) return "";
    const sign = Number(value) < 0 ? "-" : "";
    if (n > 0 && n < 0.01) return sign + "<" + withCurrency("0.01", code);
    const rounded = roundHalfUp(n, 2);
    return (rounded === 0 ? "" : sign) + withCurrency(grouped(rounded, 2), code);
  }

  // Axis ticks: short. Tooltips: exact enough to read a number off.
  function formatters(spec) {
    const suffix = spec.suffix ? " " + spec.suffix : "";
    if (spec.money) {
      const code = String(spec.currency || "USD").toUpperCase();
      return {
        tick: (v) => (Math.abs(v) >= 1000 ? withCurrency(compact(v), code) : money(v, code)),
        full: (v) => money(v, code),
      };
    }
    return {
      tick: (v) => compact(v) + suffix,
      full: (v) => compact(v) + (Math.abs(v) >= 1000 ? " (" + thousands(v) + ")" : "") + suffix,
    };
  }

  // ---- Theme --------------------------------------------------------------------

  // Colours come from tally.css's variables, so charts follow light and dark mode with the page.
  function theme() {
    const css = getComputedStyle(document.documentElement);
    const v = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
    return {
      text: v("--text", "#101828"),
      text2: v("--text-2", "#475467"),
      muted: v("--text-3", "#667085"),
      grid: v("--border", "#e4e7ec"),
      surface: v("--surface", "#ffffff"),
      font: v("--font", "system-ui, sans-serif"),
    };
  }

  const PALETTE = ["#4f46e5", "#0d9488", "#f59e0b", "#db2777", "#0284c7", "#7c3aed", "#65a30d", "#ea580c", "#64748b"];

  function withAlpha(colour, alpha) {
    const hex = /^#([0-9a-f]{6})$/i.exec(colour || "");
    if (!hex) return colour;
    const n = parseInt(hex[1], 16);
    return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
  }

  const number = (v) => (v === null || v === undefined || v === "" ? null : Number(v));

  const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");
  const darkMode = window.matchMedia("(prefers-color-scheme: dark)");

  // ---- Plugins ------------------------------------------------------------------

  // The total of the visible slices, in the doughnut's hole.
  const centreTotal = {
    id: "tallyCentre",
    afterDatasetsDraw(chart, _args, opts) {
      const arc = chart.getDatasetMeta(0).data[0];
      if (!arc || !opts.format) return;
      const values = chart.data.datasets[0].data;
      const total = values.reduce((sum, v, i) => (chart.getDataVisibility(i) && v ? sum + v : sum), 0);
      const text = opts.format(total);
      const radius = arc.innerRadius;
      const { ctx } = chart;
      let size = Math.max(12, Math.min(24, radius / 3));
      ctx.save();
      ctx.font = `650 ${size}px ${opts.font}`;
      while (size > 10 && ctx.measureText(text).width > radius * 1.7) {
        size -= 1;
        ctx.font = `650 ${size}px ${opts.font}`;
      }
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillStyle = opts.colour;
      ctx.fillText(text, arc.x, arc.y + (opts.label ? size * 0.35 : 0));
      if (opts.label) {
        ctx.font = `550 ${Math.max(11, size * 0.55)}px ${opts.font}`;
        ctx.fillStyle = opts.labelColour;
        ctx.fillText(opts.label, arc.x, arc.y - size * 0.75);
      }
      ctx.restore();
    },
  };

  // Says so when nothing is visible, rather than drawing empty axes.
  const emptyMessage = {
    id: "tallyEmpty",
    afterDraw(chart, _args, opts) {
      const anyVisible = chart.data.datasets.some((dataset, d) =>
        dataset.data.some((v, i) => {
          const shown = chart.config.type === "doughnut" ? chart.getDataVisibility(i) : chart.isDatasetVisible(d);
          return shown && v !== null && v !== 0;
        }),
      );
      if (anyVisible) return;
      const { ctx, chartArea } = chart;
      ctx.save();
      ctx.font = `550 13px ${opts.font}`;
      ctx.fillStyle = opts.colour;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(opts.text, (chartArea.left + chartArea.right) / 2, (chartArea.top + chartArea.bottom) / 2);
      ctx.restore();
    },
  };

  // ---- Building a chart -----------------------------------------------------------

  const TOOLTIP_FORMATS = {
    minute: "d MMM yyyy, HH:mm",
    hour: "d MMM yyyy, HH:mm",
    day: "EEE d MMM yyyy",
    week: "'Week of' d MMM yyyy",
    month: "MMMM yyyy",
  };

  // Axis labels: a 24-hour clock and day-month order, as the tooltips and the pages write them.
  const DISPLAY_FORMATS = { minute: "HH:mm", hour: "HH:mm", day: "d MMM", week: "d MMM", month: "MMM yyyy" };

  function baseOptions(spec, t, showLegend) {
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: reducedMotion.matches ? false : { duration: 350 },
      color: t.text2,
      font: { family: t.font },
      plugins: {
        legend: {
          display: showLegend,
          position: "bottom",
          labels: { color: t.text2, boxWidth: 10, boxHeight: 10, usePointStyle: true, pointStyle: "rectRounded" },
        },
        tooltip: {
          backgroundColor: t.text,
          titleColor: t.surface,
          bodyColor: t.surface,
          footerColor: t.surface,
          padding: 10,
          cornerRadius: 8,
          boxPadding: 4,
          usePointStyle: true,
        },
        tallyEmpty: { text: spec.empty_text || "No data for this period", colour: t.muted, font: t.font },
      },
    };
  }

  function doughnutConfig(spec, t, fmt, showLegend) {
    const labels = spec.labels || [];
    const source = (spec.datasets || [])[0] || { data: [] };
    const colours = source.colours || labels.map((_, i) => PALETTE[i % PALETTE.length]);
    const options = baseOptions(spec, t, showLegend);
    options.cutout = "68%";
    options.plugins.tooltip.callbacks = {
      label(item) {
        const visible = item.dataset.data.reduce(
          (sum, v, i) => (item.chart.getDataVisibility(i) && v ? sum + v : sum),
          0,
        );
        const share = visible ? Math.round((item.parsed / visible) * 100) : 0;
        return ` ${item.label}: ${fmt.full(item.parsed)} (${share}%)`;
      },
    };
    options.plugins.tallyCentre = {
      format: fmt.full,
      label: spec.centre_label === undefined ? "Total" : spec.centre_label,
      colour: t.text,
      labelColour: t.muted,
      font: t.font,
    };
    return {
      type: "doughnut",
      data: {
        labels,
        datasets: [
          {
            label: source.label || "",
            data: (source.data || []).map(number),
            backgroundColor: colours,
            borderColor: t.surface,
            borderWidth: 2,
            hoverOffset: 4,
          },
        ],
      },
      options,
      plugins: [centreTotal, emptyMessage],
    };
  }

  function cartesianConfig(spec, t, fmt, showLegend) {
    const isLine = spec.kind === "line";
    const stacked = spec.kind === "stacked-bar";
    const horizontal = !isLine && Boolean(spec.horizontal);
    const labels = spec.labels || [];
    const datasets = (spec.datasets || []).map((d, i) => {
      const colour = d.colour || PALETTE[i % PALETTE.length];
      const common = { label: d.label, data: (d.data || []).map(number), borderColor: colour };
      if (isLine) {
        return Object.assign(common, {
          backgroundColor: spec.area ? withAlpha(colour, 0.15) : colour,
          fill: Boolean(spec.area),
          borderWidth: 2,
          tension: 0.3,
          pointRadius: labels.length < 2 ? 3 : 0,
          pointHoverRadius: 4,
          pointBackgroundColor: colour,
        });
      }
      return Object.assign(common, {
        backgroundColor: colour,
        hoverBackgroundColor: colour, // Chart.js would brighten it; the tooltip marks the bar already
        borderWidth: 0,
        borderRadius: stacked ? 0 : 3,
        maxBarThickness: horizontal ? 22 : 36,
      });
    });

    const category = {
      grid: { display: false },
      border: { color: t.grid },
      ticks: { color: t.muted, maxRotation: 0, autoSkip: true, autoSkipPadding: 12 },
      stacked,
    };
    if (spec.x === "time" && !horizontal) {
      category.type = "time";
      category.time = {
        unit: spec.unit || "day",
        tooltipFormat: TOOLTIP_FORMATS[spec.unit || "day"],
        displayFormats: DISPLAY_FORMATS,
      };
      category.offset = !isLine;
      // Midnight ticks of an hourly axis name the day ("19 Nov") instead of "00:00".
      category.ticks.major = { enabled: ["minute", "hour"].includes(spec.unit) };
      category.ticks.font = (context) => ({ weight: context.tick && context.tick.major ? "600" : "normal" });
    }
    const value = {
      beginAtZero: true,
      stacked,
      grid: { color: t.grid },
      border: { display: false },
      ticks: { color: t.muted, maxTicksLimit: 6, callback: (v) => fmt.tick(v) },
    };
    if (spec.integer) value.ticks.precision = 0; // counts of people: no 0.5 ticks

    const options = baseOptions(spec, t, showLegend);
    options.indexAxis = horizontal ? "y" : "x";
    options.scales = horizontal ? { x: value, y: category } : { x: category, y: value };
    options.interaction = { mode: "index", intersect: false, axis: horizontal ? "y" : "x" };
    const valueOf = (item) => (horizontal ? item.parsed.x : item.parsed.y);
    options.plugins.tooltip.callbacks = {
      label: (item) => ` ${item.dataset.label}: ${fmt.full(valueOf(item))}`,
    };
    if (stacked) {
      // Top segment first, empty ones left out, and the bar's total underneath.
      options.plugins.tooltip.itemSort = (a, b) => b.datasetIndex - a.datasetIndex;
      options.plugins.tooltip.filter = (item) => Boolean(valueOf(item));
      options.plugins.tooltip.callbacks.footer = (items) =>
        items.length > 1 ? "Total: " + fmt.full(items.reduce((sum, item) => sum + valueOf(item), 0)) : "";
    }
    return { type: isLine ? "line" : "bar", data: { labels, datasets }, options, plugins: [emptyMessage] };
  }

  // ---- Legends shared between charts ------------------------------------------------

  function canvasFor(token) {
    const byId = document.getElementById(token);
    if (byId && byId.tagName === "CANVAS") return byId;
    return document.querySelector(`canvas[data-chart="${CSS.escape(token)}"]`);
  }

  function legendTokens(list) {
    return (list.dataset.legendFor || "").split(/\s+/).filter(Boolean);
  }

  function legendsFor(canvas) {
    return Array.from(document.querySelectorAll("[data-legend-for]")).filter((list) =>
      legendTokens(list).some((token) => token === canvas.id || token === canvas.dataset.chart),
    );
  }

  function chartsOf(list) {
    return legendTokens(list)
      .map((token) => canvasFor(token))
      .map((canvas) => canvas && Chart.getChart(canvas))
      .filter(Boolean);
  }

  // Each series of a chart as {label, colour}: its datasets, or a doughnut's slices.
  function seriesOf(chart) {
    if (chart.config.type === "doughnut") {
      const colours = chart.data.datasets[0].backgroundColor;
      return chart.data.labels.map((label, i) => ({ label: String(label), colour: colours[i] }));
    }
    return chart.data.datasets.map((d) => ({ label: String(d.label), colour: d.borderColor }));
  }

  // Returns whether anything changed, so a fresh chart is not updated (and re-animated) for nothing.
  function setSeriesVisible(chart, label, visible) {
    let changed = false;
    if (chart.config.type === "doughnut") {
      const index = chart.data.labels.findIndex((l) => String(l) === label);
      if (index >= 0 && chart.getDataVisibility(index) !== visible) {
        chart.toggleDataVisibility(index);
        changed = true;
      }
      return changed;
    }
    chart.data.datasets.forEach((d, i) => {
      if (String(d.label) === label && chart.isDatasetVisible(i) !== visible) {
        chart.setDatasetVisibility(i, visible);
        changed = true;
      }
    });
    return changed;
  }

  function applyLegend(list) {
    const hidden = list._tallyHidden;
    for (const chart of chartsOf(list)) {
      let changed = false;
      for (const { label } of seriesOf(chart)) changed = setSeriesVisible(chart, label, !hidden.has(label)) || changed;
      if (changed) chart.update();
    }
  }

  // (Re)builds a legend's buttons from the charts it names, keeping what the viewer has hidden.
  function buildLegend(list) {
    if (!list._tallyHidden) {
      list._tallyHidden = new Set();
      list.addEventListener("click", (event) => {
        const button = event.target.closest("button[data-series]");
        if (!button || !list.contains(button)) return;
        const label = button.dataset.series;
        const nowHidden = !list._tallyHidden.has(label);
        if (nowHidden) list._tallyHidden.add(label);
        else list._tallyHidden.delete(label);
        button.setAttribute("aria-pressed", String(!nowHidden));
        applyLegend(list);
      });
    }
    const series = new Map();
    for (const chart of chartsOf(list)) {
      for (const { label, colour } of seriesOf(chart)) if (!series.has(label)) series.set(label, colour);
    }
    const items = Array.from(series, ([label, colour]) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "legend__item";
      button.dataset.series = label;
      button.setAttribute("aria-pressed", String(!list._tallyHidden.has(label)));
      const swatch = document.createElement("span");
      swatch.className = "legend__swatch";
      swatch.setAttribute("aria-hidden", "true");
      swatch.style.background = colour;
      const text = document.createElement("span");
      text.className = "legend__label";
      text.textContent = label;
      button.append(swatch, text);
      item.append(button);
      return item;
    });
    list.replaceChildren(...items);
    applyLegend(list);
  }

  // ---- Lifecycle ---------------------------------------------------------------------

  function readSpec(canvas) {
    const source = document.getElementById(canvas.dataset.chart);
    if (!source) {
      console.warn(`charts.js: no element #${canvas.dataset.chart} with the data of`, canvas);
      return null;
    }
    try {
      return { source, spec: JSON.parse(source.textContent) };
    } catch (error) {
      console.warn(`charts.js: #${canvas.dataset.chart} is not JSON`, error);
      return null;
    }
  }

  function render(canvas) {
    const t = theme();
    Chart.defaults.font.family = t.font;
    Chart.defaults.color = t.text2;
    const previous = Chart.getChart(canvas);
    if (previous) previous.destroy();
    const read = readSpec(canvas);
    if (!read) return null;
    const { spec, source } = read;
    const fmt = formatters(spec);
    const series = spec.kind === "doughnut" ? (spec.labels || []).length : (spec.datasets || []).length;
    const showLegend = spec.legend !== false && legendsFor(canvas).length === 0 && series > 1;
    const config =
      spec.kind === "doughnut" ? doughnutConfig(spec, t, fmt, showLegend) : cartesianConfig(spec, t, fmt, showLegend);
    if (!canvas.hasAttribute("role")) canvas.setAttribute("role", "img");
    if (!canvas.hasAttribute("aria-label") && spec.title) canvas.setAttribute("aria-label", spec.title);
    const chart = new Chart(canvas, config);
    chart.$tally = { source };
    return chart;
  }

  // Charts whose canvas or data htmx removed: their resize observers would outlive them otherwise.
  function sweep() {
    for (const chart of Object.values(Chart.instances)) {
      if (!chart.canvas.isConnected || (chart.$tally && !chart.$tally.source.isConnected)) chart.destroy();
    }
  }

  // Draws every canvas without a live chart, then rebuilds every legend. Cheap enough to run
  // over the whole document after each swap, which also catches out-of-band swaps.
  function init() {
    sweep();
    for (const canvas of document.querySelectorAll("canvas[data-chart]")) {
      if (!Chart.getChart(canvas)) render(canvas);
    }
    document.querySelectorAll("[data-legend-for]").forEach(buildLegend);
  }

  // A change of colour scheme: redraw everything with the new colours.
  function redrawAll() {
    for (const canvas of document.querySelectorAll("canvas[data-chart]")) render(canvas);
    document.querySelectorAll("[data-legend-for]").forEach(buildLegend);
  }

  document.addEventListener("htmx:beforeCleanupElement", (event) => {
    const chart = event.target instanceof HTMLCanvasElement && Chart.getChart(event.target);
    if (chart) chart.destroy();
  });
  document.addEventListener("htmx:afterSettle", init);
  document.addEventListener("htmx:historyRestore", init);
  darkMode.addEventListener("change", redrawAll);

  window.TallyCharts = { init, render, format: { compact, money, thousands } };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
