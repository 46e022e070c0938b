#!/usr/bin/env bash
# Downloads CIFAR-10's official binary version, checks it against the published MD5 (and
# prints its SHA-256), and unpacks it, so that the sample can read it:
#   samples/cifar10/download_cifar10.sh DIR     -> DIR/cifar-10-batches-bin/*.bin
#   strata_cifar10 --data DIR                   (or STRATA_CIFAR10_DIR=DIR)
# An archive already at DIR/cifar-10-binary.tar.gz (copied by hand onto a machine without
# internet access) is checked and unpacked without a download. Run it again at any time:
# a complete DIR is left as it is.
set -euo pipefail

url=https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz
published_md5=c32a1d4ab5d03f1284b67883e8d87530  # from https://www.cs.toronto.edu/~kriz/cifar.html
archive_name=cifar-10-binary.tar.gz
batch_files=(data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin test_batch.bin)
record_bytes=3073
records_per_file=10000

say() { echo "download_cifar10: $*"; }
die() {
  echo "download_cifar10: $*" >&2
  exit 1
}

if [ $# -ne 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
  [ $# -eq 1 ] && exit 0
  exit 2
fi

script_dir=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
dir=$(realpath -m "$1")  # absolute, links resolved, before anything is created

# ../shared beside the repository is the read-only development copy: never write there.
if [ -d "$repo_root/../shared" ]; then
  shared=$(realpath "$repo_root/../shared")
  case "$dir/" in
    "$shared"/*) die "$dir is inside $shared, which is read-only; choose a folder elsewhere (the build tree, /tmp)" ;;
  esac
fi
mkdir -p "$dir" || die "cannot create $dir"

batches="$dir/cifar-10-batches-bin"
complete() {
  local name size
  for name in "${batch_files[@]}"; do
    [ -f "$batches/$name" ] || return 1
    size=$(stat -c %s "$batches/$name")
    [ "$size" -eq $((record_bytes * records_per_file)) ] || return 1
  done
}

if complete; then
  say "$batches already holds the six batch files; nothing to do"
  say "run the sample with --data $dir (or STRATA_CIFAR10_DIR=$dir)"
  exit 0
fi

archive="$dir/$archive_name"
if [ -f "$archive" ]; then
  say "using the archive already at $archive"
else
  say "downloading $url into $dir"
  partial="$archive.part"
  fetched=0
  if command -v curl >/dev/null; then
    curl --fail --location --silent --show-error --connect-timeout 20 --retry 2 --output "$partial" "$url" && fetched=1
  elif command -v wget >/dev/null; then
    wget --quiet --timeout=20 --tries=3 --output-document="$partial" "$url" && fetched=1
  else
    rm -f "$partial"
    die "neither curl nor wget is installed; install one, or copy the archive by hand as below:
  $url  ->  $archive"
  fi
  if [ "$fetched" -ne 1 ]; then
    rm -f "$partial"
    converter=../shared/data/make_cifar10_bin.py
    [ -f "$repo_root/../shared/data/make_cifar10_bin.py" ] &&
      converter=$(cd "$repo_root/../shared/data" && pwd)/make_cifar10_bin.py
    cat >&2 <<EOF
download_cifar10: could not reach $url
  (no network access from this machine, or the server is down).
  What to do:
    - on a machine with internet access, download $url
      and copy it to $archive, then run this script again: it checks and unpacks it; or
    - in development, write the same layout from the shared JPEG copy beside the repository:
        /usr/bin/python3 $converter $dir
      (needs Debian's python3-pil; its pixels differ slightly from the official files).
EOF
    exit 1
  fi
  mv "$partial" "$archive"
fi

md5=$(md5sum "$archive" | cut -d ' ' -f 1)
sha256=$(sha256sum "$archive" | cut -d ' ' -f 1)
say "md5    $md5"
say "sha256 $sha256"
if [ "$md5" != "$published_md5" ]; then
  mv "$archive" "$archive.bad"
  die "$archive has MD5 $md5, not the published $published_md5: a damaged or different file;" \
    "it was moved to $archive.bad; download it again"
fi
say "MD5 matches the published checksum"

tar -xzf "$archive" -C "$dir" || die "could not unpack $archive into $dir"
complete || die "$archive unpacked, but $batches does not hold the six batch files of ${records_per_file} records"
say "CIFAR-10 is in $batches"
say "run the sample with --data $dir (or STRATA_CIFAR10_DIR=$dir)"
