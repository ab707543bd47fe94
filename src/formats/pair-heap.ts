// The merge queue of score-ordered BPE tokenizers (llama2.c's encoder, llama.cpp's SentencePiece
// tokenizer): the candidate pair with the highest score first, the leftmost on ties.

/** A candidate merge of the pair starting at symbol `left`. */
export interface ScoredPair {
  score: number;
  left: number;
}

/** Max-heap on score, then min on the position of the left symbol. */
export class PairHeap<T extends ScoredPair> {
  private readonly a: T[] = [];
  private static before(x: ScoredPair, y: ScoredPair): boolean {
    return x.score > y.score || (x.score === y.score && x.left < y.left);
  }
  push(e: T): void {
    const a = this.a;
    a.push(e);
    for (let i = a.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (!PairHeap.before(a[i], a[p])) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }
  pop(): T | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1;
        let m = i;
        if (l < a.length && PairHeap.before(a[l], a[m])) m = l;
        if (l + 1 < a.length && PairHeap.before(a[l + 1], a[m])) m = l + 1;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}
