// A prompt step written in JavaScript: asks for a short answer in bullet
// points, each ending with the numbers of the sources it rests on.
//
// Passages are numbered from 1 in the order given (the contract), each cut
// to PASSAGE_CHARS so a long document cannot crowd out the others; the
// conversation's last HISTORY_TURNS messages come before the question.
//
// Built with componentize-qjs (see build.sh) against wit/step.wit.

const PASSAGE_CHARS = 1200;
const HISTORY_TURNS = 4;
const INSTRUCTIONS =
  "Answer with at most five short bullet points, using only the numbered " +
  "sources below. End each bullet with the sources it rests on, like [1] or " +
  "[2][3]. If the sources do not answer the question, say so in one bullet. " +
  "Answer in the language of the question.";

function cut(text) {
  const chars = Array.from(text);
  return chars.length <= PASSAGE_CHARS ? text : chars.slice(0, PASSAGE_CHARS).join("") + " …";
}

function sources(passages) {
  if (passages.length === 0) return "(no sources were found)";
  return passages
    .map((p, i) => `[${i + 1}]${p.title ? " " + p.title : ""}\n${cut(p.text)}`)
    .join("\n\n");
}

export const prompt = {
  // result<list<message>, step-error>: a returned list is `ok`, a thrown
  // { tag, val } is the `step-error` case.
  async build(q, passages) {
    if (q.text.trim() === "") throw { tag: "invalid-input", val: "the query is empty" };
    // Suspend once before returning (see the Python step: a call that
    // never suspends leaves its task record in the host).
    await Promise.resolve();
    const messages = [{ role: "system", content: `${INSTRUCTIONS}\n\n${sources(passages)}` }];
    for (const m of q.history.slice(-HISTORY_TURNS)) messages.push({ role: m.role, content: m.content });
    messages.push({ role: "user", content: q.text });
    return messages;
  },
};
