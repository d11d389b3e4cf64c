#!/bin/sh
':' /*
# knit launcher, the head of every bundled executable (a sh/JS polyglot: for node, line 2 is a
# string statement and this is a block comment; sh never reads past its exec or exit).
# Node start-up is the floor of a plugin's latency, so:
# - VERSION, which podman sends to every plugin of every conflist before each command, is
#   answered here without Node when stdin is empty or an object naming a supported
#   cniVersion, exactly as the Node path would answer; anything else goes to the Node path.
# - NODE_EXTRA_CA_CERTS is dropped: loading a CA bundle costs ~60 ms and no plugin needs it.
# - Any other verb goes to knitd through the C client when the agent's socket directory exists
#   (no Node start at all); without an agent for this netns the client execs the Node path.
unset NODE_EXTRA_CA_CERTS
# knit_version TEXT sets v to the VERSION answer's cniVersion for TEXT (printable ASCII, tab
# and newline only, no backslash) when it is blank or {"cniVersion":"X"} with whitespace
# between tokens; leaves v empty when only the Node path can answer. A function, so `set --`
# leaves the script's own arguments alone; no subshell.
knit_trim() { t=${1#"${1%%[![:space:]]*}"}; t=${t%"${t##*[![:space:]]}"}; }
knit_version() {
  case $1 in *[![:space:]]*) ;; *) v=@LATEST@; return ;; esac
  case $1 in *\"*\"*\"*\"*\"*) return ;; *\"*\"*\"*\"*) ;; *) return ;; esac
  set -f
  IFS='"'
  # shellcheck disable=SC2086
  set -- $1
  unset IFS
  set +f
  [ $# = 5 ] && [ "$2" = cniVersion ] || return
  knit_trim "$1"; [ "$t" = "{" ] || return
  knit_trim "$3"; [ "$t" = ":" ] || return
  knit_trim "$5"; [ "$t" = "}" ] || return
  case $4 in @SUPPORTED_ALT@) v=$4 ;; *) v=@LATEST@ ;; esac
}
if [ "$CNI_COMMAND" = VERSION ]; then
  # Answered here only for an empty stdin (or a terminal) and for the one form runtimes send,
  # {"cniVersion":"X"} (whitespace between tokens allowed) in printable ASCII without a
  # backslash: the answer is exactly the Node path's (X when supported, else the latest).
  # Anything else (other keys, escapes, NULs, other bytes, over 4096 bytes, a failed read)
  # goes to the Node path with stdin byte for byte. stdin is read once, by one dd into a
  # private file (a pipe cannot be peeked, a shell variable cannot hold NUL), and dd's byte
  # count exposes any byte `read` drops. Linear: at most 4097 bytes are looked at here.
  if [ -t 0 ]; then
    printf '{"cniVersion":"%s","supportedVersions":[@SUPPORTED_JSON@]}' @LATEST@
    exit 0
  fi
  f=${TMPDIR:-/tmp}/.knit-version.$$
  # dd and rm are found even when the runtime passes no PATH (the Node path needs none either).
  P=${PATH:+$PATH:}/usr/bin:/bin
  set -C
  # `true`, not `:`: a failed redirection of a special builtin would end the shell.
  if ! { true >"$f"; } 2>/dev/null; then set +C; exec "${KNIT_NODE:-node}" "$0" "$@"; fi
  set +C
  n=$(PATH=$P LC_ALL=C exec dd bs=4097 count=1 iflag=fullblock of="$f" 2>&1)
  b=${n##*"
"}
  b=${b%% *}
  v=
  case $b in
    '' | *[!0-9]*) PATH=$P rm -f "$f"; exec "${KNIT_NODE:-node}" "$0" "$@" ;; # dd could not read: Node will
    4097) ;;
    *)
      s= l=
      while IFS= read -r l; do s="$s$l
"; done <"$f"
      s="$s$l"
      if [ "${#s}" = "$b" ]; then
        w='	
'
        case $s in
          *[!\ -~"$w"]* | *\\*) ;; # a byte but printable ASCII, tab, newline; or an escape
          *) knit_version "$s" ;;
        esac
      fi
      ;;
  esac
  if [ -n "$v" ]; then
    PATH=$P rm -f "$f"
    printf '{"cniVersion":"%s","supportedVersions":[@SUPPORTED_JSON@]}' "$v"
    exit 0
  fi
  # The Node path gets stdin as it came: the bytes read so far, then whatever follows.
  exec 3<"$f"
  PATH=$P rm -f "$f"
  if [ "$b" = 4097 ]; then
    { PATH=$P cat <&3; PATH=$P exec cat; } | "${KNIT_NODE:-node}" "$0" "$@" 3<&-
    exit $?
  fi
  exec "${KNIT_NODE:-node}" "$0" "$@" <&3 3<&-
fi
if [ -n "$CNI_COMMAND" ] && [ -d "${KNIT_CNI_SOCKET_DIR:-/run/knit/cni}" ]; then
  # A node agent may serve this network namespace: knit-client (lib/ beside the real bin/ of
  # this file) asks knitd and, when none answers, execs the Node path below itself. Only a
  # symlinked launcher costs a readlink process. (No star-slash here: this is a JS comment.)
  f=$0
  if [ -L "$f" ]; then f=$(readlink -f -- "$f"); fi
  case $f in *[/]*) d=${f%/*} ;; *) d=. ;; esac
  c=$d/../lib/knit-client
  if [ -x "$c" ]; then exec "$c" "${f##*[/]}" "${KNIT_NODE:-node}" "$0" "$@"; fi
fi
exec "${KNIT_NODE:-node}" "$0" "$@"
*/
