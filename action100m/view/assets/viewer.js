// A video page of the Action100M viewer: draws the segment tree from the page's embedded JSON.
// Record text only ever reaches the DOM through textContent (captions are data, never markup).
"use strict";

(() => {
  const data = JSON.parse(document.getElementById("data").textContent);
  const video = document.querySelector("video");
  const byId = new Map(data.nodes.map((node) => [node.id, node]));
  const levels = []; // level -> its nodes in time order (the JSON lists them by level, then start)
  const children = new Map();
  for (const node of data.nodes) {
    (levels[node.level] = levels[node.level] || []).push(node);
    if (node.parent !== null) {
      if (!children.has(node.parent)) children.set(node.parent, []);
      children.get(node.parent).push(node);
    }
  }
  const bars = new Map();
  const leafCards = new Map();
  let selected = null;
  let playhead = null;

  function el(tag, className, text) {
    const element = document.createElement(tag);
    if (className) element.className = className;
    if (text !== undefined && text !== null) element.textContent = String(text);
    return element;
  }

  // a span clipped to the timeline: records may end up to a second past the video
  function fraction(seconds) {
    return Math.min(Math.max(seconds, 0), data.duration) / data.duration;
  }

  function clock(seconds) {
    const tenths = Math.round(seconds * 10);
    const minutes = Math.floor(tenths / 600);
    return `${minutes}:${((tenths - minutes * 600) / 10).toFixed(1).padStart(4, "0")}`;
  }

  function actionOf(node) {
    const brief = node.annotation && node.annotation.action.brief;
    for (const text of [brief, node.action_label]) {
      if (text && text.trim() !== "N/A") return text;
    }
    return "";
  }

  function axis() {
    const steps = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
    const step = steps.find((s) => data.duration / s <= 12) || steps[steps.length - 1];
    const ticks = el("div", "axis");
    for (let t = 0; t <= data.duration + 1e-9; t += step) {
      const tick = el("span", "tick", step < 1 ? clock(t) : clock(t).replace(/\.0$/, ""));
      tick.style.left = `${100 * fraction(t)}%`;
      ticks.appendChild(tick);
    }
    return ticks;
  }

  function drawTimeline() {
    const box = document.getElementById("timeline");
    const head = el("div", "row");
    head.append(el("div", "label"), axis());
    box.appendChild(head);
    const rows = el("div", "rows");
    levels.forEach((nodes, level) => {
      const row = el("div", "row");
      row.appendChild(el("div", "label", `L${level}`));
      const track = el("div", "track");
      nodes.forEach((node, i) => {
        const bar = el("button", i % 2 ? "bar odd" : "bar");
        bar.type = "button";
        bar.style.left = `${100 * fraction(node.start)}%`;
        bar.style.width = `${100 * (fraction(node.end) - fraction(node.start))}%`;
        const action = actionOf(node);
        bar.title = `${clock(node.start)}–${clock(node.end)}${action ? ` · ${action}` : ""}`;
        bar.dataset.id = node.id;
        bar.appendChild(el("span", "", action));
        bar.addEventListener("click", () => select(node));
        bars.set(node.id, bar);
        track.appendChild(bar);
      });
      row.appendChild(track);
      rows.appendChild(row);
    });
    const overlay = el("div", "overlay");
    playhead = el("div", "playhead");
    overlay.appendChild(playhead);
    rows.appendChild(overlay);
    box.appendChild(rows);
  }

  function drawLeaves() {
    const leaves = data.nodes.filter((node) => node.thumb).sort((a, b) => a.start - b.start);
    const section = document.getElementById("leaves");
    if (!leaves.length) {
      section.hidden = true;
      return;
    }
    section.appendChild(el("h2", "", `Leaf frames (${leaves.length})`));
    const strip = el("div", "strip");
    for (const node of leaves) {
      const card = el("button", "leaf");
      card.type = "button";
      const image = el("img");
      image.src = node.thumb;
      image.alt = `middle frame of ${clock(node.start)}–${clock(node.end)}`;
      image.loading = "lazy";
      card.append(image, el("span", "", clock(node.start)));
      card.addEventListener("click", () => select(node));
      leafCards.set(node.id, card);
      strip.appendChild(card);
    }
    section.appendChild(strip);
  }

  function drawFailures() {
    const section = document.getElementById("failures");
    if (!data.failures.length) {
      section.hidden = true;
      return;
    }
    section.appendChild(el("h2", "", `Failures (${data.failures.length})`));
    const list = el("ul");
    for (const failure of data.failures) {
      const item = el("li");
      item.append(el("b", "", failure.stage), el("span", "", failure.node_id ? ` node ${failure.node_id}: ` : ": "));
      item.appendChild(el("span", "", failure.reason));
      list.appendChild(item);
    }
    section.appendChild(list);
  }

  function field(list, name, value) {
    list.appendChild(el("dt", "", name));
    const empty = value === null || value === undefined || value === "";
    list.appendChild(el("dd", empty ? "empty" : "", empty ? "—" : value));
  }

  function showDetail(node) {
    const panel = document.getElementById("detail");
    panel.replaceChildren();
    const kids = (children.get(node.id) || []).length;
    panel.appendChild(el("h2", "", `Level ${node.level} · ${clock(node.start)} – ${clock(node.end)}`));
    const shape = kids ? `${kids} children` : "leaf";
    panel.appendChild(el("p", "sub", `${(node.end - node.start).toFixed(2)} s · ${shape} · ${node.id}`));
    if (node.thumb) {
      const image = el("img", "thumb");
      image.src = node.thumb;
      image.alt = "middle frame";
      panel.appendChild(image);
    }
    const captions = el("dl");
    field(captions, "Action label", node.action_label);
    field(captions, "Frame caption", node.frame_caption);
    field(captions, "Segment caption", node.segment_caption);
    panel.appendChild(captions);
    panel.appendChild(el("h3", "", "Annotation"));
    if (node.annotation) {
      const annotation = el("dl", "annotation");
      field(annotation, "Action", node.annotation.action.brief);
      field(annotation, "Action (detailed)", node.annotation.action.detailed);
      field(annotation, "Actor", node.annotation.action.actor);
      field(annotation, "Summary", node.annotation.summary.brief);
      field(annotation, "Summary (detailed)", node.annotation.summary.detailed);
      panel.appendChild(annotation);
    } else {
      panel.appendChild(el("p", "empty", "No annotation for this node."));
    }
    const provenance = node.provenance || data.provenance;
    if (provenance) {
      const details = el("details", "provenance");
      details.appendChild(el("summary", "", node.provenance ? "Provenance (node)" : "Provenance (record)"));
      details.appendChild(el("pre", "", JSON.stringify(provenance, null, 2)));
      panel.appendChild(details);
    }
  }

  function movePlayhead(seconds) {
    playhead.style.left = `${100 * fraction(seconds)}%`;
  }

  // vertically only: scrollIntoView would also shift the tracks sideways by a bar's minimum width
  function revealRow(bar) {
    const scroller = document.getElementById("timeline");
    const box = scroller.getBoundingClientRect();
    const row = bar.getBoundingClientRect();
    if (row.top < box.top) scroller.scrollTop -= box.top - row.top;
    else if (row.bottom > box.bottom) scroller.scrollTop += row.bottom - box.bottom;
  }

  function select(node, focus) {
    if (selected) {
      bars.get(selected.id).classList.remove("selected");
      for (const bar of document.querySelectorAll(".bar.ancestor")) bar.classList.remove("ancestor");
      if (leafCards.has(selected.id)) leafCards.get(selected.id).classList.remove("selected");
    }
    selected = node;
    const bar = bars.get(node.id);
    bar.classList.add("selected");
    for (let up = byId.get(node.parent); up; up = byId.get(up.parent)) bars.get(up.id).classList.add("ancestor");
    if (leafCards.has(node.id)) leafCards.get(node.id).classList.add("selected");
    if (focus) bar.focus({ preventScroll: true });
    revealRow(bar);
    // honoured before the video has loaded too: it becomes the position playback starts from
    if (video) video.currentTime = node.start;
    movePlayhead(node.start);
    showDetail(node);
  }

  const moves = {
    ArrowLeft: (node) => levels[node.level][levels[node.level].indexOf(node) - 1],
    ArrowRight: (node) => levels[node.level][levels[node.level].indexOf(node) + 1],
    ArrowUp: (node) => byId.get(node.parent),
    ArrowDown: (node) => (children.get(node.id) || [])[0],
  };

  // capture: the keys must not also reach the player's controls, which seek with them
  document.addEventListener(
    "keydown",
    (event) => {
      const move = moves[event.key];
      if (!move || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
      event.preventDefault();
      const next = selected ? move(selected) : levels[0][0];
      if (next) select(next, true);
    },
    true,
  );

  drawTimeline();
  drawLeaves();
  drawFailures();
  document.getElementById("detail").appendChild(el("p", "empty", "Click a segment to see its captions."));
  if (video) {
    for (const name of ["timeupdate", "seeked"]) video.addEventListener(name, () => movePlayhead(video.currentTime));
  }
  movePlayhead(0);
})();
