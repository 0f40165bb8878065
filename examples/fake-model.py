#!/usr/bin/env python3
"""A scripted stand-in model for the promptgate example. It is NOT a language model.

It speaks just enough of the OpenAI HTTP API (POST /v1/chat/completions and
POST /v1/embeddings) for `examples/demo.sh` to *record* the example's model responses
once, so that the demo then replays them offline and gives the same comment on every
machine. Nobody needs a GPU, an API key or a network to run the demo; the recordings
under examples/acme-support/recordings/ were made with this script (`RECORD=1 bash
examples/demo.sh`). Point a real OpenAI-compatible server (Ollama, vLLM, ...) at the
same example to see what a real model does.

What it answers, all deterministically:

* Judge requests (system prompt starting "You grade answers"): crude word-overlap
  grading, not understanding. faithfulness = 0.8 x the share of the answer's content
  words found in the `context` variable, the reference answer or the question, + 0.2 x
  the share of the reference's content words the answer covers; relevance = how much
  of the answer is on the question's or reference's topic; hallucination =
  faithfulness < 0.5. Replies with strict JSON.
* Ticket triage (system prompt containing `"category"`): keyword rules -> JSON
  {"category": ..., "priority": ...}. The rules are imperfect on purpose (one golden
  case is misrouted), as a real model's would be.
* Support answers (anything else): the two policy-excerpt sentences that best match the
  question, with a friendly opener ("base" behaviour). When the system prompt says "at
  most N words" (the example's PR), the answer comes from TERSE below: short answers
  written by hand, one per golden question, showing what such a prompt typically does
  to a small model - the main fact survives, a condition or second fact is dropped,
  and now and then it overpromises or deflects. Unlisted questions fall back to the
  first N words of the best sentence.
* Embeddings: a hashed bag of (stemmed, stop-word-free) words, 64 signed dimensions,
  plus a fixed direction every text shares (real sentence embeddings are anisotropic
  too), L2-normalised - similar wording gives a high cosine, nothing more.

`usage` token counts are estimated from word counts. Generation time is simulated with a
short sleep proportional to the completion length (roughly a small local model), so the
latency rows of the comment are plausible; pass --no-delay to skip it.

Usage: python3 examples/fake-model.py PORT [--no-delay]     (binds 127.0.0.1 only)
"""

import hashlib
import json
import math
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIMS = 64
DELAY = True

STOP = set(
    """a an the and or but if then so of to in on at by for from with without as is are
    was were be been being am do does did done have has had can could will would shall
    should may might must i me my you your yours we us our ours it its this that these
    those there here what which who whom when where why how not no yes any all some
    each every just also too very please thanks thank hi hello sure happy help hope
    question reaching anything else let know up out about into than after before only
    get got i'm i've don't can't won't isn't it's that's we'll you'll you're we're
    they're they'll sorry they them their he she his her one""".split()
)

WORD = re.compile(r"\$?\d+(?:[.,:]\d+)*%?|[a-z]+(?:'[a-z]+)?")


def tokens(text):
    return WORD.findall(text.lower())


def stem(w):
    """A very rough stemmer: returned/returns/return, shipping/shipped/ship."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            w = w[: -len(suffix)]
            break
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiouls":
        w = w[:-1]
    return w


def content(text):
    """Stemmed content words, in order."""
    return [stem(w) for w in tokens(text) if w not in STOP]


def sentences(text):
    parts = re.split(r"(?<=[.!?])\s+", text.strip())
    return [p.strip() for p in parts if p.strip()]


def digest(text):
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def estimate_tokens(text):
    return max(1, round(len(text.split()) * 1.3))


# ---------------------------------------------------------------- support answers

OPENERS = ["Thanks for reaching out!", "Happy to help.", "Good question!", "Sure!"]
CLOSERS = ["Anything else I can help with?", "Hope that helps!", "", ""]


def parse_support(user):
    """Splits the example's user template into (policy excerpt, question)."""
    m = re.search(r"Policy excerpt:\s*(.*?)\s*Customer question:\s*(.*)", user, re.S)
    if m:
        return m.group(1).strip(), m.group(2).strip()
    return "", user.strip()


def ranked_sentences(context, question):
    q = set(content(question))
    scored = []
    for i, s in enumerate(sentences(context)):
        overlap = len(q & set(content(s)))
        scored.append((overlap, -i, s))
    scored.sort(reverse=True)
    return scored


# What the model says once the system prompt squeezes it into "at most 8 words" and
# forbids mentioning policies. Scripted by hand, one per question of the example's
# golden set, to show the usual damage of such a prompt: the main fact survives, a
# condition, second fact or contact detail is dropped, and now and then the model
# overpromises or deflects. Questions not listed get `squeeze()` of the best sentence.
TERSE = {
    "How long do I have to return shoes that don't fit?": "Returns accepted within 30 days if unworn.",
    "I wore my sneakers on a run and they hurt. Can I still return them?": "No, worn shoes can't be returned.",
    "Do I have to pay for return shipping?": "No, return shipping is free: prepaid label, UPS.",
    "I sent my return last week. When will I get my money back?": "5-7 business days, to your original payment method.",
    "Can I swap my running shoes for a half size bigger?": "Yes, free size exchanges within 30 days.",
    "I bought clearance boots marked Final Sale. Can I return them?": "No, Final Sale items cannot be returned.",
    "I bought these as a Christmas gift on December 10. Until when can they be returned?": "You can return them until January 31.",
    "Is shipping free?": "Free standard shipping on orders over $75.",
    "I need shoes by Friday. Do you have faster shipping?": "Yes, Express: $14.95, 1-2 business days.",
    "Do you ship to Canada? Will I pay duties?": "Yes, we ship to Canada, duties included.",
    "Can you ship to Germany?": "No, only the United States and Canada.",
    "Can I ship to my APO address?": "Yes: Standard shipping to APO, but no Express.",
    "I just placed an order by mistake. Can I cancel it?": "Yes, within 1 hour on the Orders page.",
    "My order shipped but I entered the wrong street. Can you change the address?": "Sorry, shipped orders can't be changed.",
    "Where is my order? How can I track it?": "Tracking link by email, or your Orders page.",
    "Tracking says delivered but the package isn't here.": "Wait 48 hours, then contact us.",
    "My shoes arrived with a torn sole. What should I do?": "Email us a photo for a free replacement.",
    "The sole of my boots came off after four months. Is that covered?": "Yes, our 1-year warranty covers sole separation.",
    "My running shoes' tread is worn down after 600 miles. Warranty?": "Sorry, normal wear is not covered.",
    "The shoes I bought last week are now 20% cheaper. Can I get the difference?": "Yes, we'll refund the difference.",
    "Nike.com has the same shoe for $20 less. Will you match it?": "Sorry, please contact our support team.",
    "Can I use two promo codes on one order?": "No, one promo code per order.",
    "I forgot to enter my discount code at checkout. Can you apply it now?": "Sorry, codes can't be added after ordering.",
    "What payment methods do you take?": "Visa, Mastercard, American Express, PayPal, Apple Pay, Klarna.",
    "Can I pay in installments?": "Klarna: 4 interest-free installments on $50+ orders.",
    "Does my Acme gift card expire?": "No, Acme gift cards never expire.",
    "How do rewards points work?": "Earn points on every purchase for rewards.",
    "Do you have a student discount?": "Yes, 15% off full-price items with SheerID.",
    "Do your shoes run small? I'm usually a 10.": "They run true to size.",
    "I have wide feet. Do you make wide shoes?": "Yes, 2E widths in Pace and Trail.",
    "How do I clean my leather boots? Can they go in the washing machine?": "No machine washing; damp cloth, then air dry.",
    "Are any of your shoes vegan?": "Yes, the Terra line is 100% vegan.",
    "When will the Trail Runner in size 9 be back in stock?": "We can't give restock dates; tap Notify me.",
    "Can I pick up my order at one of your stores?": "No, Acme is online only, no stores.",
    "When can I reach a human?": "Call 1-800-555-0199, 8 am-8 pm ET, Monday-Friday.",
    "I never got the password reset email.": "Check spam; reset links are valid 1 hour.",
    "Please delete my account and all my data.": "Email privacy@acmefootwear.example to delete your account.",
    "When will I be charged for a pre-order?": "You're charged when it ships.",
}

FILLER = {"the", "a", "an", "your", "our", "their", "is", "are", "be", "can", "will", "of"}


def squeeze(sentence, n):
    """Fallback for unscripted questions: the first n non-filler words of a sentence."""
    kept = [w for w in sentence.rstrip(".!?").split() if w.lower().strip(",;:") not in FILLER]
    text = " ".join(kept[:n]).rstrip(",;:")
    return text[0].upper() + text[1:] + "."


def support_answer(system, user):
    context, question = parse_support(user)
    ranked = ranked_sentences(context, question)
    limit = re.search(r"at most (\d+) words", system, re.I)
    h = digest(question)

    if limit:
        n = int(limit.group(1))
        scripted = TERSE.get(" ".join(question.split()))
        if scripted and len(scripted.split()) <= n:
            return scripted
        return squeeze(ranked[0][2], n) if ranked else "Sorry, I don't know."

    if not ranked:
        return (
            "I'm sorry, I don't have information about that. Please email "
            "support@acmefootwear.example and the team will help."
        )
    # Base behaviour: the two best-matching sentences of the excerpt (all of a short
    # one), in excerpt order, wrapped in a friendly opener and sometimes a closer.
    chosen = sorted(ranked[:2], key=lambda r: -r[1])
    body = " ".join(r[2] for r in chosen)
    body = re.sub(r"\byour Acme account\b", "your account", body)
    parts = [OPENERS[h % len(OPENERS)], body, CLOSERS[(h >> 8) % len(CLOSERS)]]
    return " ".join(p for p in parts if p)


# ---------------------------------------------------------------- ticket triage

CATEGORY_RULES = [
    ("account", ["password", "hacked", "logged into", "gdpr", "delete my account", "email address", "rewards points", "account"]),
    ("billing", ["charged", "charge", "declined", "invoice", "klarna", "promo", "code", "payment", "full price"]),
    ("returns", ["return", "refund", "exchange"]),
    ("shipping", ["tracking", "deliver", "delivered", "arrive", "shipped", "zip code", "package", "order #"]),
    ("product", ["sole", "stitching", "size", "vegan", "stock", "wide", "fit"]),
]
URGENT = ["charged twice", "did not make", "hacked", "compromised"]
HIGH = ["hasn't moved", "no package", "wrong zip", "wrong address", "defect", "coming apart", "separated",
        "declined", "still haven't", "before it gets lost"]
NORMAL = ["invoice", "print", "exchange", "express", "404", "never got", "missing", "gdpr", "journalist",
          "in january", "discount back", "change the email"]


def triage(user):
    text = user.lower()
    category = "other"
    for name, words in CATEGORY_RULES:
        if any(w in text for w in words):
            category = name
            break
    if any(w in text for w in URGENT):
        priority = "urgent"
    elif any(w in text for w in HIGH):
        priority = "high"
    elif any(w in text for w in NORMAL):
        priority = "normal"
    else:
        priority = "low"
    return json.dumps({"category": category, "priority": priority})


# ---------------------------------------------------------------- judge

def section(text, title, end):
    m = re.search(re.escape(title) + r"\n(.*?)" + end, text, re.S)
    return m.group(1).strip() if m else ""


def judge(user):
    vars_text = section(user, "## Context (case variables)", r"\n\n## ")
    try:
        variables = json.loads(vars_text)
    except ValueError:
        variables = {}
    reference = section(user, "## Reference answer", r"\n\n## Answer to grade")
    answer = section(user, "## Answer to grade", r"\n\nReply with the JSON object only\.\s*$")
    question = str(variables.get("question", "")) or section(user, "## Conversation the assistant saw", r"\n\n## ")
    grounding = variables.get("context") or " ".join(str(v) for v in variables.values())
    # Words echoed from the question are not claims, so they count as supported.
    support = set(content(str(grounding) + " " + reference + " " + question))

    said = content(answer)
    ref = set(content(reference))
    if not said:
        return {"faithfulness": 0.0, "relevance": 0.0, "hallucination": True, "reason": "The answer is empty."}
    unsupported = [w for w in dict.fromkeys(said) if w not in support]
    precision = 1 - len([w for w in said if w not in support]) / len(said)
    covered = len(ref & set(said)) / len(ref) if ref else 1.0
    faithfulness = round(0.8 * precision + 0.2 * covered, 2)

    topic = set(content(question)) | ref
    on_topic = sum(1 for w in said if w in topic) / len(said)
    relevance = round(min(1.0, 0.45 + 0.75 * on_topic), 2)

    hallucination = faithfulness < 0.5
    missing = [w for w in dict.fromkeys(content(reference)) if w not in set(said)]
    if hallucination:
        reason = "The answer is not supported by the context: " + ", ".join(unsupported[:4]) + "."
        if not unsupported:
            reason = "The answer leaves out what the context says: " + ", ".join(missing[:4]) + "."
    elif covered < 0.6:
        reason = "Supported, but it leaves out: " + ", ".join(missing[:4]) + "."
    else:
        reason = "Supported by the context and covers the reference."
    return {"faithfulness": faithfulness, "relevance": relevance, "hallucination": hallucination, "reason": reason}


# ---------------------------------------------------------------- embeddings

# A fixed direction shared by every text, like the anisotropy of real sentence
# embeddings: unrelated texts still land around cosine 0.35, not 0.
COMMON = [((digest(f"common-{i}") % 2001) - 1000) / 1000 for i in range(DIMS)]
COMMON_WEIGHT = 0.7


def unit(v):
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def embed(text):
    v = [0.0] * DIMS
    for w in content(text):
        h = digest(w)
        v[h % DIMS] += 1.0 if (h >> 32) & 1 else -1.0
    common = unit(COMMON)
    v = unit(v) if any(v) else [0.0] * DIMS
    return [round(x, 4) for x in unit([a + COMMON_WEIGHT * c for a, c in zip(v, common)])]


# ---------------------------------------------------------------- HTTP

def chat(body):
    messages = body.get("messages", [])
    system = next((m.get("content", "") for m in messages if m.get("role") == "system"), "")
    user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    if system.startswith("You grade answers"):
        text = json.dumps(judge(user))
    elif '"category"' in system:
        text = triage(user)
    else:
        text = support_answer(system, user)
    prompt_tokens = sum(estimate_tokens(m.get("content", "")) for m in messages)
    completion_tokens = estimate_tokens(text)
    if DELAY:
        time.sleep(0.12 + 0.011 * completion_tokens + (digest(text) % 60) / 1000)
    return {
        "id": "chatcmpl-" + hashlib.sha256(text.encode()).hexdigest()[:12],
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", ""),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def embeddings(body):
    inputs = body.get("input", "")
    if isinstance(inputs, str):
        inputs = [inputs]
    if DELAY:
        time.sleep(0.02)
    data = [{"object": "embedding", "index": i, "embedding": embed(t)} for i, t in enumerate(inputs)]
    n = sum(estimate_tokens(t) for t in inputs)
    return {"object": "list", "data": data, "model": body.get("model", ""),
            "usage": {"prompt_tokens": n, "total_tokens": n}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self.reply(400, {"error": {"message": "request body is not JSON"}})
        if self.path.rstrip("/").endswith("/chat/completions"):
            return self.reply(200, chat(body))
        if self.path.rstrip("/").endswith("/embeddings"):
            return self.reply(200, embeddings(body))
        return self.reply(404, {"error": {"message": f"no route for {self.path}"}})

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            return self.reply(200, {"object": "list", "data": []})
        return self.reply(404, {"error": {"message": f"no route for {self.path}"}})

    def reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main(argv):
    global DELAY
    args = [a for a in argv[1:] if not a.startswith("--")]
    if "--no-delay" in argv:
        DELAY = False
    if len(args) != 1 or not args[0].isdigit():
        sys.exit("usage: fake-model.py PORT [--no-delay]")
    server = ThreadingHTTPServer(("127.0.0.1", int(args[0])), Handler)
    server.daemon_threads = True
    print(f"fake-model: listening on http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv)
