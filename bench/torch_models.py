#!/usr/bin/env python3
"""PyTorch side of bench/speed.ts: the same models, batches and steps, to compare speed honestly.

Run by bench/speed.ts as
    OPENBLAS_NUM_THREADS=B OMP_NUM_THREADS=T /usr/bin/python3 bench/torch_models.py --job JSON --threads T
and prints one line `RESULT {"ms": .., "rate": .., "maxRssMB": .., "note": ..}`.

Models (shapes and per-step work identical to ours, written the way fairseq v0.10.2 computes them):
  * transformer: post-LN encoder-decoder, sinusoidal positions, embeddings scaled by sqrt(C),
    one table shared by encoder input, decoder input and output projection, dropout 0.3,
    label-smoothed CE (eps 0.1, fairseq's v0.10.2 formula over log_softmax), gradient norm,
    Adam with decoupled weight decay (torch.optim.AdamW, foreach), inverse_sqrt lr.
  * difformer: latent 128 -> model 512 projections, learned positions, length head, q_sample,
    self-conditioning (a no-grad first pass on every other step, as the TS bench forces), time
    MLP, embedding LN, bidirectional decoder with cross-attention, project_out_dim, MSE + anchor
    CE on non-pad rows + 0.1 * length CE.
  * beam search (beam 5): incremental decoding with cached keys/values, top-2k candidates over
    beam x vocabulary, EOS forbidden before and forced at the fixed length (same steps as ours).
  * Difformer sampling: K denoiser calls with self-conditioning and the posterior update.

The note reports which BLAS library torch really loaded (from /proc/self/maps).
"""
import argparse
import json
import math
import os
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, EOS, BOS = 1, 2, 0


def blas_in_use():
    libs = set()
    with open('/proc/self/maps') as f:
        for line in f:
            p = line.split()[-1]
            if 'blas' in p or 'lapack' in p or 'mkl' in p:
                libs.add(os.path.realpath(p))
    return ', '.join(sorted(libs)) or 'none found'


def sinusoidal_table(num, dim, pad):
    """fairseq SinusoidalPositionalEmbedding.get_embedding."""
    half = dim // 2
    f = math.log(10000) / (half - 1)
    f = torch.exp(torch.arange(half, dtype=torch.float) * -f)
    e = torch.arange(num, dtype=torch.float).unsqueeze(1) * f.unsqueeze(0)
    e = torch.cat([torch.sin(e), torch.cos(e)], dim=1)
    e[pad, :] = 0
    return e


def make_positions(tokens, pad):
    mask = tokens.ne(pad).int()
    return (torch.cumsum(mask, dim=1) * mask).long() + pad


class MHA(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h, self.dh = h, d // h
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

    def kv(self, x):
        b, s, _ = x.shape
        k = self.k_proj(x).view(b, s, self.h, self.dh).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.h, self.dh).transpose(1, 2)
        return k, v

    def attend(self, x, k, v, bias):
        b, t, c = x.shape
        q = (self.q_proj(x) * self.dh ** -0.5).view(b, t, self.h, self.dh).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2))
        if bias is not None:
            scores = scores + bias
        p = torch.softmax(scores, dim=-1)
        o = torch.matmul(p, v).transpose(1, 2).reshape(b, t, c)
        return self.out_proj(o)

    def forward(self, x, kv_in, bias):
        k, v = self.kv(kv_in)
        return self.attend(x, k, v, bias)


class Layer(nn.Module):
    """fairseq post-LN layer; cross=True adds encoder attention (decoder layer)."""

    def __init__(self, d, ffn, h, cross, dropout):
        super().__init__()
        self.self_attn = MHA(d, h)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.cross = cross
        if cross:
            self.encoder_attn = MHA(d, h)
            self.encoder_attn_layer_norm = nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.p = dropout

    def ffn(self, x):
        return F.dropout(self.fc2(F.relu(self.fc1(x))), self.p, self.training)

    def forward(self, x, self_bias, enc=None, enc_bias=None):
        x = self.self_attn_layer_norm(x + F.dropout(self.self_attn(x, x, self_bias), self.p, self.training))
        if self.cross:
            x = self.encoder_attn_layer_norm(x + F.dropout(self.encoder_attn(x, enc, enc_bias), self.p, self.training))
        return self.final_layer_norm(x + self.ffn(x))

    def step(self, x, cache, cross_kv, enc_bias):
        """One incremental position x [N, 1, C]; cache (k, v) [N, H, s, D] or None."""
        k, v = self.self_attn.kv(x)
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        x = self.self_attn_layer_norm(x + self.self_attn.attend(x, k, v, None))
        x = self.encoder_attn_layer_norm(x + self.encoder_attn.attend(x, cross_kv[0], cross_kv[1], enc_bias))
        return self.final_layer_norm(x + self.ffn(x)), (k, v)


def pad_bias(mask):
    """[B, S] bool (True = pad) -> additive [B, 1, 1, S]."""
    return (mask.float() * -1e9)[:, None, None, :]


class Transformer(nn.Module):
    def __init__(self, vocab, d, ffn, h, layers, dropout):
        super().__init__()
        self.embed = nn.Embedding(vocab, d, padding_idx=PAD)
        nn.init.normal_(self.embed.weight, 0, d ** -0.5)
        self.register_buffer('pos', sinusoidal_table(1026, d, PAD))
        self.enc = nn.ModuleList(Layer(d, ffn, h, False, dropout) for _ in range(layers))
        self.dec = nn.ModuleList(Layer(d, ffn, h, True, dropout) for _ in range(layers))
        self.scale, self.p = math.sqrt(d), dropout

    def embed_tokens(self, tokens, positions):
        return F.dropout(self.scale * self.embed(tokens) + self.pos[positions], self.p, self.training)

    def encode(self, src):
        x = self.embed_tokens(src, make_positions(src, PAD))
        bias = pad_bias(src.eq(PAD))
        for layer in self.enc:
            x = layer(x, bias)
        return x, bias

    def forward(self, src, prev):
        enc, enc_bias = self.encode(src)
        t = prev.shape[1]
        y = self.embed_tokens(prev, make_positions(prev, PAD))
        causal = torch.triu(torch.full((t, t), -1e9), 1)[None, None]
        self_bias = causal + pad_bias(prev.eq(PAD))
        for layer in self.dec:
            y = layer(y, self_bias, enc, enc_bias)
        return F.linear(y, self.embed.weight)


def label_smoothed_nll_loss(lprobs, target, eps, ignore_index):
    """fairseq v0.10.2 label_smoothed_nll_loss, summed."""
    target = target.unsqueeze(-1)
    nll = -lprobs.gather(dim=-1, index=target)
    smooth = -lprobs.sum(dim=-1, keepdim=True)
    pad = target.eq(ignore_index)
    nll.masked_fill_(pad, 0.0)
    smooth.masked_fill_(pad, 0.0)
    eps_i = eps / lprobs.size(-1)
    return ((1.0 - eps) * nll.sum() + eps_i * smooth.sum()), nll.sum()


def timestep_embedding(t, dim):
    half = dim // 2
    f = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float) / half)
    a = t.float()[:, None] * f[None]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=1)


class Difformer(nn.Module):
    def __init__(self, vocab, latent, d, ffn, h, layers, dropout, steps=2000, factor=4.0):
        super().__init__()
        self.embed = nn.Embedding(vocab, latent, padding_idx=PAD)
        nn.init.normal_(self.embed.weight, 0, 0.02)
        self.enc_in = nn.Linear(latent, d, bias=False)
        self.dec_in = nn.Linear(latent, d, bias=False)
        self.dec_out = nn.Linear(d, latent, bias=False)
        self.enc_pos = nn.Embedding(1026, d)
        self.dec_pos = nn.Embedding(1026, d)
        self.enc = nn.ModuleList(Layer(d, ffn, h, False, dropout) for _ in range(layers))
        self.dec = nn.ModuleList(Layer(d, ffn, h, True, dropout) for _ in range(layers))
        self.embed_length = nn.Linear(d, 256, bias=False)
        self.embed_norm = nn.LayerNorm(d)
        self.self_cond = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Linear(d, d))
        self.embed_time = nn.Sequential(nn.Linear(d, 4 * d), nn.ReLU(), nn.Linear(4 * d, d))
        self.scale, self.p, self.d, self.T, self.F = math.sqrt(latent), dropout, d, steps, factor
        ab = 1 - torch.sqrt(torch.arange(steps + 1, dtype=torch.float64) / steps + 1e-4)
        self.sqrt_ab, self.sqrt_1mab = ab[1:].sqrt().float(), (1 - ab[1:]).sqrt().float()

    def encode(self, src):
        x = self.enc_in(self.scale * self.embed(src)) + self.enc_pos(make_positions(src, PAD))
        x = F.dropout(x, self.p, self.training)
        bias = pad_bias(src.eq(PAD))
        for layer in self.enc:
            x = layer(x, bias)
        return x, src.eq(PAD)

    def length_logits(self, enc, pad):
        keep = (~pad).float()
        mean = (enc * keep[:, :, None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1)
        return self.embed_length(mean)

    def denoise(self, zt, t_model, mask, enc, enc_pad, prev):
        p0 = prev if prev is not None else torch.zeros_like(zt)
        h = F.dropout(self.self_cond(torch.cat([self.dec_in(zt), self.dec_in(p0)], 2)), self.p, self.training)
        h = h + self.embed_time(timestep_embedding(t_model, self.d))[:, None, :]
        h = h + self.dec_pos(make_positions(mask.long() + PAD, PAD))  # slot i of a real position -> pad + 1 + i
        h = F.dropout(self.embed_norm(h), self.p, self.training)
        self_bias = pad_bias(mask.eq(0))
        enc_bias = pad_bias(enc_pad)
        for layer in self.dec:
            h = layer(h, self_bias, enc, enc_bias)
        return self.dec_out(h)

    def loss(self, src, tgt, self_cond):
        enc, enc_pad = self.encode(src)
        mask = tgt.ne(PAD).float()
        b = tgt.shape[0]
        cls = (mask.sum(1) - (~enc_pad).float().sum(1) + 128).clamp(0, 255).long()
        len_loss = F.cross_entropy(self.length_logits(enc, enc_pad), cls, reduction='sum') / b
        z0 = self.scale * self.embed(tgt)
        t = torch.randint(0, self.T, (b,))
        zt = self.sqrt_ab[t][:, None, None] * z0 + self.F * self.sqrt_1mab[t][:, None, None] * torch.randn_like(z0)
        t_model = t.float() * 1000.0 / self.T
        prev = None
        if self_cond:
            with torch.no_grad():
                prev = self.denoise(zt, t_model, mask, enc, enc_pad, None)
        z0hat = self.denoise(zt, t_model, mask, enc, enc_pad, prev)
        ntok = mask.sum().clamp(min=1)
        diff = (((z0hat - z0) ** 2) * mask[:, :, None]).sum() / (ntok * z0.shape[2])
        rows = tgt.reshape(-1).ne(PAD).nonzero().squeeze(1)
        logits = F.linear(z0hat.reshape(-1, z0.shape[2]).index_select(0, rows), self.embed.weight)
        ce, _ = label_smoothed_nll_loss(F.log_softmax(logits, -1), tgt.reshape(-1).index_select(0, rows), 0.1, -100)
        return diff + ce / rows.numel() + 0.1 * len_loss


def tensors(b):
    src = torch.tensor(b['srcTokens'], dtype=torch.long).view(b['bsz'], b['srcLen'])
    tgt = torch.tensor(b['target'], dtype=torch.long).view(b['bsz'], b['tgtLen'])
    prev = torch.tensor(b['prevOutputTokens'], dtype=torch.long).view(b['bsz'], b['tgtLen'])
    return src, tgt, prev


def build(arch, vocab, train):
    if arch == 'transformer_iwslt_de_en':
        m = Transformer(vocab, 512, 1024, 4, 6, 0.3)
    elif arch == 'transformer_tiny':
        m = Transformer(vocab, 64, 256, 4, 2, 0.3)
    elif arch == 'difformer_iwslt_de_en':
        m = Difformer(vocab, 128, 512, 1024, 4, 6, 0.1)
    else:
        raise SystemExit(f'unknown arch {arch}')
    m.train(train)
    return m


def train_job(job, data):
    m = build(job['arch'], data['vocab'], True)
    opt = torch.optim.AdamW(m.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-8, weight_decay=1e-4, foreach=True)
    batches = [tensors(b) for b in data['batches']]
    ntoks = [b['ntokens'] for b in data['batches']]
    difformer = job['arch'].startswith('difformer')
    counter = [0]

    def step(i):
        src, tgt, prev = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        if difformer:
            loss = m.loss(src, tgt, counter[0] % 2 == 0)  # self-conditioning on every other step
            counter[0] += 1
            sample_size = 1
        else:
            logits = m(src, prev)
            loss, _ = label_smoothed_nll_loss(F.log_softmax(logits, -1).view(-1, logits.shape[-1]), tgt.view(-1), 0.1, PAD)
            sample_size = ntoks[i % len(batches)]
        loss.backward()
        grads = [p.grad for p in m.parameters() if p.grad is not None]
        torch._foreach_mul_(grads, 1.0 / sample_size)
        gnorm = torch.norm(torch.stack([g.norm() for g in grads]))
        gnorm.item()
        for g in opt.param_groups:
            g['lr'] = 5e-4 * min(1.0, 1 / 4000)
        opt.step()

    for i in range(job['warmup']):
        step(i)
    t0 = time.perf_counter()
    tokens = 0
    for i in range(job['steps']):
        step(i)
        tokens += ntoks[i % len(batches)]
    ms = (time.perf_counter() - t0) * 1000 / job['steps']
    return ms, tokens / (ms * job['steps'] / 1000)


@torch.no_grad()
def beam_search(m, src, k, length, vocab):
    b = src.shape[0]
    enc, enc_bias = m.encode(src)
    order = torch.arange(b).repeat_interleave(k)
    enc, enc_bias = enc.index_select(0, order), enc_bias.index_select(0, order)
    cross = [layer.encoder_attn.kv(enc) for layer in m.dec]
    caches = [None] * len(m.dec)
    n = b * k
    tokens = torch.full((n, length + 2), EOS, dtype=torch.long)
    scores = torch.zeros(n, length + 1)
    cum = torch.zeros(b, k)
    finals = []
    for step in range(length + 1):
        x = m.scale * m.embed(tokens[:, step:step + 1]) + m.pos[PAD + 1 + step][None, None]
        for i, layer in enumerate(m.dec):
            x, caches[i] = layer.step(x, caches[i], cross[i], enc_bias)
        lp = F.log_softmax(F.linear(x[:, 0], m.embed.weight), -1)
        lp[:, PAD] = -math.inf
        if step < length:
            lp[:, EOS] = -math.inf
        else:
            eos_col = lp[:, EOS].clone()
            lp.fill_(-math.inf)
            lp[:, EOS] = eos_col
        if step == 0:
            lp.view(b, k, vocab)[:, 1:] = -math.inf
        cand = (lp.view(b, k, vocab) + cum[:, :, None]).view(b, k * vocab)
        top_v, top_i = torch.topk(cand, 2 * k, dim=1)
        beam_idx, tok = top_i // vocab, top_i % vocab
        # the first k candidates that do not end in EOS continue (fairseq's active_hypos)
        is_eos = tok.eq(EOS)
        if step == length:
            finals.append((top_v[:, :k] / (step + 1), tok[:, :k]))
            break
        rank = is_eos.long() * (2 * k) + torch.arange(2 * k)[None]
        _, keep = torch.topk(rank, k, dim=1, largest=False)
        rows = (torch.gather(beam_idx, 1, keep) + torch.arange(b)[:, None] * k).view(-1)
        cum = torch.gather(top_v, 1, keep)
        tokens = tokens.index_select(0, rows)
        tokens[:, step + 1] = torch.gather(tok, 1, keep).view(-1)
        scores = scores.index_select(0, rows)
        caches = [(c[0].index_select(0, rows), c[1].index_select(0, rows)) for c in caches]
    return finals


@torch.no_grad()
def diffusion_generate(m, src, src_lengths, b1, b2, K):
    bsz = src.shape[0]
    nb = b1 * b2
    enc, enc_pad = m.encode(src)
    lens = []
    for L in src_lengths:
        base = max(L, 2)
        for l in range(b1):
            lens += [max(base + l - b1 // 2, 2)] * b2
    order = torch.arange(bsz).repeat_interleave(nb)
    enc, enc_pad = enc.index_select(0, order), enc_pad.index_select(0, order)
    n, L = len(lens), max(lens)
    mask = torch.zeros(n, L)
    for c, ln in enumerate(lens):
        mask[c, :ln] = 1
    # respaced sqrt schedule (K of T steps) and its posterior coefficients
    ts = torch.linspace(0, m.T - 1, K).round().long()
    ab = m.sqrt_ab.double()[ts] ** 2
    ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    beta = 1 - ab / ab_prev
    c1 = (beta * ab_prev.sqrt() / (1 - ab)).float()
    c2 = ((1 - ab_prev) * (1 - beta).sqrt() / (1 - ab)).float()
    sig = (beta * (1 - ab_prev) / (1 - ab)).clamp(min=1e-20).sqrt().float()
    z = torch.randn(n, L, m.embed.weight.shape[1])
    prev = None
    for k in range(K - 1, -1, -1):
        t_model = torch.full((n,), float(ts[k]) * 1000.0 / m.T)
        z0hat = m.denoise(z, t_model, mask, enc, enc_pad, prev)
        if k > 0:
            z = c1[k] * z0hat + c2[k] * z + sig[k] * torch.randn_like(z)
        prev = z0hat
    lp = F.log_softmax(F.linear(prev, m.embed.weight), -1)
    sc, tok = lp.max(-1)
    score = (sc * mask).sum(1) / mask.sum(1)
    best = score.view(bsz, nb).argmax(1)
    return tok, best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--job', required=True)
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args()
    job = json.loads(a.job)
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    with open(job['dataFile']) as f:
        data = json.load(f)
    if job['kind'] == 'train':
        ms, rate = train_job(job, data)
        note = ''
    else:
        m = build(job['arch'], data['vocab'], False)
        b = data['batches'][0]
        src, _, _ = tensors(b)
        if job['kind'] == 'beam':
            run = lambda: beam_search(m, src, job.get('beam', 5), job.get('len', 24), data['vocab'])
        else:
            run = lambda: diffusion_generate(m, src, b['srcLengths'], job.get('b1', 1), job.get('b2', 1), job.get('decodingSteps', 20))
        for _ in range(job['warmup']):
            run()
        t0 = time.perf_counter()
        for _ in range(job['steps']):
            run()
        ms = (time.perf_counter() - t0) * 1000 / job['steps']
        rate = b['bsz'] / (ms / 1000)
        note = ''
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    note = f"torch {torch.__version__}, {torch.get_num_threads()} thr, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, BLAS: {blas_in_use()}"
    print('RESULT ' + json.dumps({'ms': ms, 'rate': rate, 'maxRssMB': rss, 'note': note}), flush=True)


if __name__ == '__main__':
    main()
