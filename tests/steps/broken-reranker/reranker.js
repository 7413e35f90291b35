// Breaks the reranker contract on purpose (tests/check_step.rs): it
// ignores top-n, returns passages it was not given, and throws a plain
// exception (a trap, not a step-error) when there are no passages.
export const reranker = {
  async rerank(query, passages, topN, requestId) {
    if (passages.length === 0) throw new Error("nothing to rerank");
    const extra = { id: "invented", text: "not from the input", title: undefined, url: undefined, score: 1, metadata: [] };
    return [...passages, extra];
  },
};
