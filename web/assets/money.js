// Money in the dashboard: exact integer micro-credits, never floats.
//
// The API writes credits as JSON numbers with up to six decimal places.
// `OneFlowMoney.parseJson` reads every money field from the number's own
// source text (JSON.parse's reviver `context.source`) into a BigInt of
// micro-credits, so no amount ever passes through a binary float. Browsers
// without `context.source` fall back to the number's shortest text, which is
// the same decimal for every amount below nine billion credits.
"use strict";

(function () {
  const MICROS = 1000000n;

  // Field names whose numbers are credits wherever they appear.
  const MONEY_KEYS = new Set([
    "balance", "available", "held", "cost", "quote", "amount", "added",
    "balance_after", "available_after", "total_cost", "shortfall", "limit",
    "spent", "remaining", "daily", "weekly", "monthly", "max_price",
    "initial_balance", "per_input_token", "per_output_token", "per_image",
    "per_request", "per_second",
  ]);

  const DECIMAL = /^([+-])?(\d+)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

  // Parses decimal text ("12", "0.5", "-3.000001", "1e2") into micro-credits.
  // Returns null for anything that is not an exact amount of micro-credits.
  function toMicros(text) {
    const m = DECIMAL.exec(String(text).trim());
    if (!m) return null;
    const sign = m[1] === "-" ? -1n : 1n;
    let digits = m[2] + (m[3] || "");
    // Position of the decimal point counted from the right, after exponent.
    let scale = (m[3] || "").length - (m[4] ? parseInt(m[4], 10) : 0);
    if (!Number.isFinite(scale) || Math.abs(scale) > 40) return null;
    // Bring the scale to exactly six places.
    while (scale < 6) {
      digits += "0";
      scale += 1;
    }
    while (scale > 6) {
      if (!digits.endsWith("0")) return null; // finer than a micro-credit
      digits = digits.slice(0, -1);
      scale -= 1;
    }
    return sign * BigInt(digits || "0");
  }

  // Shortest exact decimal text of micro-credits, as the server writes it:
  // 12, 0.5, -3.000001.
  function format(micros) {
    if (typeof micros !== "bigint") {
      if (micros === null || micros === undefined) return "—";
      const m = toMicros(micros);
      if (m === null) return String(micros);
      micros = m;
    }
    const neg = micros < 0n;
    const abs = neg ? -micros : micros;
    const whole = abs / MICROS;
    const frac = abs % MICROS;
    let out = whole.toString();
    if (frac !== 0n) {
      out += "." + frac.toString().padStart(6, "0").replace(/0+$/, "");
    }
    return (neg ? "-" : "") + out;
  }

  function reviver(key, value, context) {
    if (typeof value === "number" && MONEY_KEYS.has(key)) {
      const source = context && typeof context.source === "string"
        ? context.source
        : String(value);
      const m = toMicros(source);
      return m === null ? value : m;
    }
    return value;
  }

  // JSON.parse with money fields as BigInt micro-credits.
  function parseJson(text) {
    return JSON.parse(text, reviver);
  }

  window.OneFlowMoney = { toMicros, format, parseJson, MICROS };
})();
