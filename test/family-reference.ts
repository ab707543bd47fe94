// A float64 forward pass of the decoder-only families, written for the tests from transformers'
// modeling and configuration files (modeling_llama / mistral / qwen2 / qwen3 / gemma3 / phi3.py,
// modeling_rope_utils.py, masking_utils.py; configuration_*.py for defaults). It reads a raw
// config.json object and tensors by their Hugging Face names, as transformers does, and shares
// nothing with src/ (no config parser, no architecture table, no kernels), so it checks both.
//
// Where transformers computes in float32 (RoPE inverse frequencies, Gemma's embedding scale and
// (1 + w) norms) this computes the same formulas in float64: the difference is float32 rounding,
// inside the tests' tolerance.

export type Tensors = Map<string, Float32Array>;
type Cfg = Record<string, any>;

const FAMILY: Record<string, string> = {
  llama: 'llama', mistral: 'mistral', qwen2: 'qwen2', qwen3: 'qwen3', gemma3_text: 'gemma3', phi3: 'phi3',
};

/** What transformers' config class would hold for these fields (its defaults filled in). */
function resolved(cfg: Cfg) {
  const fam = FAMILY[cfg.model_type];
  if (!fam) throw new Error(`reference: model_type ${cfg.model_type}`);
  const D = cfg.hidden_size, H = cfg.num_attention_heads, L = cfg.num_hidden_layers;
  const dflt = <T>(v: T | undefined | null, d: T): T => (v === undefined || v === null ? d : v);
  const kvDefault: Record<string, number | null> = { llama: null, mistral: 8, qwen2: 32, qwen3: 32, gemma3: 4, phi3: null };
  const K = dflt(cfg.num_key_value_heads, kvDefault[fam] ?? H);
  const headDefault: Record<string, number> = { qwen3: 128, gemma3: 256 };
  const d = dflt(cfg.head_dim, headDefault[fam] ?? Math.floor(D / H));
  const eps = dflt(cfg.rms_norm_eps, fam === 'phi3' ? 1e-5 : 1e-6);
  const theta = dflt(cfg.rope_theta, fam === 'gemma3' ? 1e6 : 10000);
  const tie = dflt(cfg.tie_word_embeddings, fam === 'gemma3');
  const partial = fam === 'phi3' ? dflt(cfg.partial_rotary_factor, 1) : 1;
  const rot = Math.floor(d * partial);
  // layer kinds (configuration_qwen2/3: sliding iff use_sliding_window and i >= max_window_layers;
  // gemma3: (i + 1) % sliding_window_pattern != 0; mistral / phi3: every layer when set)
  let windows: number[];
  if (fam === 'mistral' || fam === 'phi3') {
    const w = cfg.sliding_window === undefined ? (fam === 'mistral' ? 4096 : null) : cfg.sliding_window;
    windows = Array.from({ length: L }, () => w ?? 0);
  } else if (fam === 'qwen2' || fam === 'qwen3') {
    const w = cfg.use_sliding_window ? dflt(cfg.sliding_window, 4096) : null;
    const types: string[] = cfg.layer_types ?? Array.from({ length: L }, (_, i) => (w !== null && i >= dflt(cfg.max_window_layers, 28) ? 'sliding_attention' : 'full_attention'));
    windows = types.map((t) => (t === 'sliding_attention' ? w ?? 0 : 0));
  } else if (fam === 'gemma3') {
    const w = dflt(cfg.sliding_window, 4096);
    const p = dflt(cfg.sliding_window_pattern, 6);
    const types: string[] = cfg.layer_types ?? Array.from({ length: L }, (_, i) => ((i + 1) % p ? 'sliding_attention' : 'full_attention'));
    windows = types.map((t) => (t === 'sliding_attention' ? w : 0));
  } else windows = Array.from({ length: L }, () => 0);
  return { fam, D, H, K, d, L, F: cfg.intermediate_size, V: cfg.vocab_size, eps, theta, tie, rot, windows };
}

/** Inverse frequencies of the rotated pairs (modeling_rope_utils, float64). */
function invFreq(cfg: Cfg, rot: number, theta: number, scaling: Cfg | null, T: number, fam: string): { f: number[]; mscale: number } {
  const base = Array.from({ length: rot / 2 }, (_, i) => 1 / Math.pow(theta, (2 * i) / rot));
  const type = scaling ? scaling.rope_type ?? scaling.type : 'default';
  if (!scaling || type === 'default') return { f: base, mscale: 1 };
  if (type === 'linear') return { f: base.map((x) => x / scaling.factor), mscale: 1 };
  if (type === 'llama3') {
    const { factor, low_freq_factor: lo, high_freq_factor: hi, original_max_position_embeddings: old } = scaling;
    return {
      f: base.map((x) => {
        const wl = (2 * Math.PI) / x;
        if (wl < old / hi) return x;
        if (wl > old / lo) return x / factor;
        const s = (old / wl - lo) / (hi - lo);
        return ((1 - s) * x) / factor + s * x;
      }),
      mscale: 1,
    };
  }
  if (type === 'longrope' && fam === 'phi3') {
    const orig = scaling.original_max_position_embeddings ?? cfg.original_max_position_embeddings ?? 4096;
    const factor = scaling.factor ?? cfg.max_position_embeddings / orig;
    const mscale = scaling.attention_factor ?? (factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(orig)));
    // dynamic_rope_update: the long factors once the sequence outgrows the original context
    const ext: number[] = T > orig ? scaling.long_factor : scaling.short_factor;
    return { f: base.map((x, i) => x / ext[i]), mscale };
  }
  throw new Error(`reference: rope type ${type}`);
}

/** Logits [T][vocab] of `tokens` in float64. */
export function referenceLogits(cfg: Cfg, w: Tensors, tokens: ArrayLike<number>): Float64Array[] {
  const r = resolved(cfg);
  const { fam, D, H, K, d, L, F, V, eps, rot } = r;
  const T = tokens.length;
  const gemma = fam === 'gemma3';
  const get = (name: string) => {
    const t = w.get(name);
    if (!t) throw new Error(`reference: no tensor ${name}`);
    return t;
  };
  const has = (name: string) => w.has(name);
  const norm = (x: Float64Array, weight: Float32Array): Float64Array => {
    let ss = 0;
    for (const v of x) ss += v * v;
    const inv = 1 / Math.sqrt(ss / x.length + eps);
    return x.map((v, i) => v * inv * (gemma ? 1 + weight[i] : weight[i]));
  };
  const linear = (x: Float64Array, prefix: string, rows: number, from = 0): Float64Array => {
    const W = get(`${prefix}.weight`);
    const b = has(`${prefix}.bias`) ? get(`${prefix}.bias`) : null;
    const cols = x.length;
    const y = new Float64Array(rows);
    for (let r0 = 0; r0 < rows; r0++) {
      const o = (from + r0) * cols;
      let s = b ? b[from + r0] : 0;
      for (let i = 0; i < cols; i++) s += W[o + i] * x[i];
      y[r0] = s;
    }
    return y;
  };
  // RoPE per layer kind: Gemma 3's sliding layers use rope_local_base_freq and no scaling
  const ropeOf = (local: boolean) => invFreq(cfg, rot, local ? cfg.rope_local_base_freq ?? 10000 : r.theta, local ? null : cfg.rope_scaling ?? null, T, fam);
  const rope = (x: Float64Array, heads: number, pos: number, fr: { f: number[]; mscale: number }) => {
    const half = rot / 2;
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < half; i++) {
        const ang = pos * fr.f[i];
        const c = Math.cos(ang) * fr.mscale, s = Math.sin(ang) * fr.mscale;
        const a = x[h * d + i], b = x[h * d + i + half];
        // q * cos + rotate_half(q) * sin on the first rot dims
        x[h * d + i] = a * c - b * s;
        x[h * d + i + half] = b * c + a * s;
      }
    }
  };
  const headNorm = (x: Float64Array, heads: number, weight: Float32Array) => {
    for (let h = 0; h < heads; h++) x.set(norm(x.subarray(h * d, (h + 1) * d), weight), h * d);
  };
  const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
  const silu = (x: number) => x / (1 + Math.exp(-x));
  const scale = gemma ? Math.pow(cfg.query_pre_attn_scalar ?? 256, -0.5) : Math.pow(d, -0.5);
  const attnCap = gemma ? cfg.attn_logit_softcapping ?? null : null;

  const E = get('model.embed_tokens.weight');
  const xs = Array.from({ length: T }, (_, t) => {
    const x = Float64Array.from(E.subarray(tokens[t] * D, (tokens[t] + 1) * D));
    return gemma ? x.map((v) => v * Math.sqrt(D)) : x;
  });
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    const local = gemma && r.windows[l] > 0;
    const fr = ropeOf(local);
    const qs: Float64Array[] = [], ks: Float64Array[] = [], vs: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const h = norm(xs[t], get(`${p}.input_layernorm.weight`));
      let q: Float64Array, k: Float64Array, v: Float64Array;
      if (fam === 'phi3') {
        // qkv = self.qkv_proj(h); q = qkv[..., :H*d]; k = next K*d; v = the rest
        q = linear(h, `${p}.self_attn.qkv_proj`, H * d, 0);
        k = linear(h, `${p}.self_attn.qkv_proj`, K * d, H * d);
        v = linear(h, `${p}.self_attn.qkv_proj`, K * d, H * d + K * d);
      } else {
        q = linear(h, `${p}.self_attn.q_proj`, H * d);
        k = linear(h, `${p}.self_attn.k_proj`, K * d);
        v = linear(h, `${p}.self_attn.v_proj`, K * d);
      }
      if (fam === 'qwen3' || gemma) {
        headNorm(q, H, get(`${p}.self_attn.q_norm.weight`));
        headNorm(k, K, get(`${p}.self_attn.k_norm.weight`));
      }
      rope(q, H, t, fr);
      rope(k, K, t, fr);
      qs.push(q); ks.push(k); vs.push(v);
    }
    const W = r.windows[l];
    for (let t = 0; t < T; t++) {
      const att = new Float64Array(H * d);
      for (let h = 0; h < H; h++) {
        const g = Math.floor(h / (H / K));
        const from = W > 0 ? Math.max(0, t - W + 1) : 0; // kv_idx > q_idx - sliding_window
        const sc: number[] = [];
        for (let j = from; j <= t; j++) {
          let s = 0;
          for (let e = 0; e < d; e++) s += qs[t][h * d + e] * ks[j][g * d + e];
          s *= scale;
          if (attnCap) s = Math.tanh(s / attnCap) * attnCap;
          sc.push(s);
        }
        const m = Math.max(...sc);
        const ex = sc.map((s) => Math.exp(s - m));
        const sum = ex.reduce((a, b) => a + b, 0);
        ex.forEach((e, jj) => {
          for (let c = 0; c < d; c++) att[h * d + c] += (e / sum) * vs[from + jj][g * d + c];
        });
      }
      let o = linear(att, `${p}.self_attn.o_proj`, D);
      if (gemma) o = norm(o, get(`${p}.post_attention_layernorm.weight`));
      for (let i = 0; i < D; i++) xs[t][i] += o[i];
      const h2 = norm(xs[t], get(gemma ? `${p}.pre_feedforward_layernorm.weight` : `${p}.post_attention_layernorm.weight`));
      let gate: Float64Array, up: Float64Array;
      if (fam === 'phi3') {
        // up_states = gate_up_proj(h); gate, up_states = up_states.chunk(2, dim=-1)
        gate = linear(h2, `${p}.mlp.gate_up_proj`, F, 0);
        up = linear(h2, `${p}.mlp.gate_up_proj`, F, F);
      } else {
        gate = linear(h2, `${p}.mlp.gate_proj`, F);
        up = linear(h2, `${p}.mlp.up_proj`, F);
      }
      const act = gate.map((a, i) => (gemma ? gelu(a) : silu(a)) * up[i]);
      let m = linear(act, `${p}.mlp.down_proj`, D);
      if (gemma) m = norm(m, get(`${p}.post_feedforward_layernorm.weight`));
      for (let i = 0; i < D; i++) xs[t][i] += m[i];
    }
  }
  const cls = r.tie ? E : get('lm_head.weight');
  const cap = gemma ? cfg.final_logit_softcapping ?? null : null;
  return xs.map((x) => {
    const n = norm(x, get('model.norm.weight'));
    const out = new Float64Array(V);
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let i = 0; i < D; i++) s += cls[v * D + i] * n[i];
      out[v] = cap ? Math.tanh(s / cap) * cap : s;
    }
    return out;
  });
}

/** The tensors a checkpoint of `cfg` holds, by HF name and shape (from the modeling files'
 * module trees), for generating random models. */
export function referenceTensorShapes(cfg: Cfg): [string, number[]][] {
  const r = resolved(cfg);
  const { fam, D, H, K, d, L, F, V } = r;
  const gemma = fam === 'gemma3';
  const out: [string, number[]][] = [['model.embed_tokens.weight', [V, D]], ['model.norm.weight', [D]]];
  const attnBias = (fam === 'llama' || fam === 'qwen3' || gemma) && cfg.attention_bias === true;
  const qkvBias = fam === 'qwen2' || attnBias;
  const mlpBias = fam === 'llama' && cfg.mlp_bias === true;
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    out.push([`${p}.input_layernorm.weight`, [D]], [`${p}.post_attention_layernorm.weight`, [D]]);
    if (gemma) out.push([`${p}.pre_feedforward_layernorm.weight`, [D]], [`${p}.post_feedforward_layernorm.weight`, [D]]);
    if (fam === 'qwen3' || gemma) out.push([`${p}.self_attn.q_norm.weight`, [d]], [`${p}.self_attn.k_norm.weight`, [d]]);
    if (fam === 'phi3') {
      out.push([`${p}.self_attn.qkv_proj.weight`, [H * d + 2 * K * d, D]], [`${p}.self_attn.o_proj.weight`, [D, H * d]]);
      out.push([`${p}.mlp.gate_up_proj.weight`, [2 * F, D]], [`${p}.mlp.down_proj.weight`, [D, F]]);
      continue;
    }
    const lin = (name: string, rows: number, cols: number, bias: boolean) => {
      out.push([`${p}.${name}.weight`, [rows, cols]]);
      if (bias) out.push([`${p}.${name}.bias`, [rows]]);
    };
    lin('self_attn.q_proj', H * d, D, qkvBias);
    lin('self_attn.k_proj', K * d, D, qkvBias);
    lin('self_attn.v_proj', K * d, D, qkvBias);
    lin('self_attn.o_proj', D, H * d, attnBias);
    lin('mlp.gate_proj', F, D, mlpBias);
    lin('mlp.up_proj', F, D, mlpBias);
    lin('mlp.down_proj', D, F, mlpBias);
  }
  if (!r.tie) out.push(['lm_head.weight', [V, D]]);
  return out;
}
