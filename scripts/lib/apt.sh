# Shared by scripts/test and scripts/check-deploy (sourced, not run).
# apt_install PKG…: install the Debian packages that are missing. Needs root; otherwise it
# names what is missing and fails (tests never skip for a missing tool).
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "missing Debian packages: ${missing[*]} (run as root to install them)" >&2
        return 1
    fi
    printf '\n==> installing %s\n' "${missing[*]}" >&2
    local cache
    cache="$(mktemp -d /tmp/megatorrent-apt.XXXXXX)"
    mkdir -p "$cache/partial"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dir::Cache::archives="$cache" "${missing[@]}" >/dev/null
    rm -rf "$cache"
}
