// The run page's case filters in the browser. The server applies the same rules to
// ?show=&suite=&metric=&q=&sort= (src/server/run_view.rs) and the page works without
// this script; while the page holds every case, this applies them without a round
// trip (and a #show=…&q=… fragment on load), else a change submits the form.
(function () {
  "use strict";
  var root = document.documentElement;
  var form = document.getElementById("filters");
  var list = document.getElementById("cases");
  var count = document.getElementById("shown-count");
  if (!form || !list) {
    root.setAttribute("data-js", "ready");
    return;
  }
  var complete = list.getAttribute("data-complete") === "true";
  var cards = Array.prototype.slice.call(list.querySelectorAll(".case"));

  function field(name) {
    var el = form.elements[name];
    if (!el) return "";
    if (el.length !== undefined && el.tagName !== "SELECT") {
      for (var i = 0; i < el.length; i++) if (el[i].checked) return el[i].value;
      return "";
    }
    return el.value;
  }

  function setField(name, value) {
    var el = form.elements[name];
    if (!el) return;
    if (el.length !== undefined && el.tagName !== "SELECT") {
      for (var i = 0; i < el.length; i++) el[i].checked = el[i].value === value;
    } else {
      el.value = value;
    }
  }

  function state() {
    return {
      show: field("show") || "all",
      suite: field("suite").trim(),
      metric: field("metric").trim(),
      q: field("q").trim().toLowerCase(),
      sort: field("sort")
    };
  }

  function words(s) {
    return (s || "").split(" ").filter(Boolean);
  }

  function keeps(card, s) {
    if (s.show !== "all" && words(card.getAttribute("data-flags")).indexOf(s.show) < 0) return false;
    if (s.suite && card.getAttribute("data-suite") !== s.suite) return false;
    if (s.metric && words(card.getAttribute("data-metrics")).indexOf(s.metric) < 0) return false;
    if (s.q) {
      var text = card.getAttribute("data-case");
      var outputs = card.querySelectorAll(".output");
      for (var i = 0; i < outputs.length; i++) text += "\n" + outputs[i].textContent;
      if (text.toLowerCase().indexOf(s.q) < 0) return false;
    }
    return true;
  }

  function sortKey(card, metric) {
    var keys = JSON.parse(card.getAttribute("data-sort") || "{}");
    return Object.prototype.hasOwnProperty.call(keys, metric) ? keys[metric] : null;
  }

  function apply() {
    var s = state();
    var ordered = cards.slice();
    if (s.sort === "delta") {
      ordered.sort(function (a, b) {
        var x = sortKey(a, s.metric), y = sortKey(b, s.metric);
        if (x === null && y === null) return 0;
        if (x === null) return 1;
        if (y === null) return -1;
        return x - y;
      });
    } else if (s.sort === "case") {
      ordered.sort(function (a, b) {
        var x = a.getAttribute("data-case"), y = b.getAttribute("data-case");
        return x < y ? -1 : x > y ? 1 : 0;
      });
    }
    var shown = 0;
    ordered.forEach(function (card) {
      var keep = keeps(card, s);
      card.hidden = !keep;
      if (keep) shown++;
      list.appendChild(card);
    });
    if (count) count.textContent = String(shown);
    root.setAttribute("data-shown", String(shown));
    var params = new URLSearchParams(new FormData(form));
    ["show", "suite", "metric", "q", "sort"].forEach(function (k) {
      if (!params.get(k) || (k === "show" && params.get(k) === "all")) params.delete(k);
    });
    var query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
  }

  function changed(ev) {
    if (complete) {
      apply();
    } else if (ev.type === "change") {
      form.submit();
    }
  }

  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  form.addEventListener("submit", function (ev) {
    if (complete) {
      ev.preventDefault();
      apply();
    }
  });
  window.addEventListener("beforeprint", function () {
    Array.prototype.forEach.call(document.querySelectorAll("details"), function (d) {
      d.open = true;
    });
  });

  if (complete && location.hash.length > 1) {
    var wanted = new URLSearchParams(location.hash.slice(1));
    ["show", "suite", "metric", "q", "sort"].forEach(function (k) {
      if (wanted.has(k)) setField(k, wanted.get(k));
    });
    apply();
  }
  root.setAttribute("data-js", "ready");
  if (!root.hasAttribute("data-shown")) {
    root.setAttribute("data-shown", String(cards.length));
  }
})();
