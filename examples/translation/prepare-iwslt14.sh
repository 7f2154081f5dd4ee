#!/usr/bin/env bash
# Downloads IWSLT14 De-En (TED talks) and writes raw, lowercased, cleaned text to
# examples/translation/iwslt14/{train,valid,test}.{de,en}, following fairseq's
# examples/translation/prepare-iwslt14.sh (without Moses tokenization: difformer-preprocess
# learns SentencePiece on raw text). Needs internet. Set URL if the archive moved.
set -euo pipefail
cd "$(dirname "$0")"
URL=${URL:-http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz}
OUT=iwslt14
mkdir -p "$OUT/orig" && cd "$OUT/orig"
[ -f de-en.tgz ] || curl -fL -o de-en.tgz "$URL"
tar xzf de-en.tgz
cd ../..
# as fairseq: drop the url/talkid/keywords lines, keep the text of title and description
strip_tags() { grep -v -e '<url>' -e '<talkid>' -e '<keywords>' | sed -e 's/<\/\?title>//g' -e 's/<\/\?description>//g' -e 's/^\s*//' -e 's/\s*$//'; }
lower() { perl -CSD -pe '$_ = lc'; } # Unicode-aware, as Moses' lowercase.perl (tr leaves Ä Ö Ü)
xml_segs() { grep '<seg id' "$1" | sed -e 's/<seg id="[0-9]*">\s*//' -e 's/\s*<\/seg>\s*//' -e "s/\’/\'/g"; }
for l in de en; do
  strip_tags < "$OUT/orig/de-en/train.tags.de-en.$l" | lower > "$OUT/train.all.$l"
done
# clean: drop empty lines and pairs with length ratio > 1.5 or > 175 words (clean-corpus-n)
paste "$OUT/train.all.de" "$OUT/train.all.en" | awk -F'\t' '{
  n=split($1,a," "); m=split($2,b," ");
  if (n>=1 && m>=1 && n<=175 && m<=175 && n/m<=1.5 && m/n<=1.5) print }' > "$OUT/train.clean.tsv"
awk 'NR % 23 == 0' "$OUT/train.clean.tsv" > "$OUT/valid.tsv"
awk 'NR % 23 != 0' "$OUT/train.clean.tsv" > "$OUT/train.tsv"
for split in train valid; do
  cut -f1 "$OUT/$split.tsv" > "$OUT/$split.de"; cut -f2 "$OUT/$split.tsv" > "$OUT/$split.en"
done
: > "$OUT/test.de"; : > "$OUT/test.en"
for f in IWSLT14.TED.dev2010 IWSLT14.TEDX.dev2012 IWSLT14.TED.tst2010 IWSLT14.TED.tst2011 IWSLT14.TED.tst2012; do
  for l in de en; do xml_segs "$OUT/orig/de-en/$f.de-en.$l.xml" | lower >> "$OUT/test.$l"; done
done
wc -l "$OUT"/{train,valid,test}.{de,en}
