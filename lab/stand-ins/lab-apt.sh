#!/bin/sh
# Builds the throwaway, signed apt repositories that stand in for Docker's and NVIDIA's in the
# provision scenario and the demo lab (lab/demo.sh). Runs INSIDE the lab host
# (ansible.builtin.script from molecule/provision/prepare.yml or lab/demo/prepare.yml), which
# reaches Debian's mirror but neither download.docker.com nor nvidia.github.io.
#
#   /srv/lab-apt/lab-apt.asc       public half of a key made here and thrown away with the host
#   /srv/lab-apt/docker/           Docker's layout: dists/<codename>/stable/binary-<arch>/, pool/
#                                  carrying Debian's docker.io (its dependencies come from Debian)
#   /srv/lab-apt/nvidia/<arch>/    NVIDIA's flat layout ("<url>/$(ARCH) /") with STAND-IN packages
#                                  named like the toolkit's, at version $1
#
# Usage: lab-apt.sh <toolkit version>
set -eu

version=$1
root=/srv/lab-apt
codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
arch=$(dpkg --print-architecture)

rm -rf "$root"
install -d "$root/docker/pool" "$root/docker/dists/$codename/stable/binary-$arch" \
  "$root/nvidia/$arch" "$root/build"
GNUPGHOME=$(mktemp -d)
export GNUPGHOME
trap 'gpgconf --kill gpg-agent >/dev/null 2>&1 || true; rm -rf "$GNUPGHOME" "$root/build"' EXIT

# A throwaway signing key: it only ever signs these test repositories.
gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
  --quick-gen-key 'homelab.gpu lab apt repository (throwaway test key) <lab@invalid>' ed25519 sign never
gpg --batch --armor --export >"$root/lab-apt.asc"

sign() {  # sign <dir holding Release>
  gpg --batch --yes --pinentry-mode loopback --passphrase '' --clearsign -o "$1/InRelease" "$1/Release"
  gpg --batch --yes --pinentry-mode loopback --passphrase '' --armor --detach-sign -o "$1/Release.gpg" "$1/Release"
}

# Docker: the engine is Debian's docker.io, fetched from the Debian mirror.
cd "$root/docker/pool"
apt-get -q -o APT::Sandbox::User=root download docker.io
cd "$root/docker"
apt-ftparchive packages pool >"dists/$codename/stable/binary-$arch/Packages"
apt-ftparchive \
  -o APT::FTPArchive::Release::Origin=homelab-gpu-lab \
  -o APT::FTPArchive::Release::Label=docker-stand-in \
  -o APT::FTPArchive::Release::Suite="$codename" \
  -o APT::FTPArchive::Release::Codename="$codename" \
  -o APT::FTPArchive::Release::Components=stable \
  -o APT::FTPArchive::Release::Architectures="$arch" \
  release "dists/$codename" >"$root/build/Release"
mv "$root/build/Release" "dists/$codename/Release"
sign "dists/$codename"

# NVIDIA: stand-ins for the four packages of the toolkit. No GPU code at all; the runtime only
# hands over to runc, so that "docker run --runtime nvidia" works on a host without a GPU.
standin() {  # standin <package> <depends> [<file to ship as /usr/bin/nvidia-container-runtime>]
  pkg=$1
  dir="$root/build/$pkg"
  install -d "$dir/DEBIAN" "$dir/usr/share/doc/$pkg"
  {
    echo "Package: $pkg"
    echo "Version: $version"
    echo "Architecture: $arch"
    echo "Maintainer: homelab.gpu tests <lab@invalid>"
    [ -z "$2" ] || echo "Depends: $2"
    echo "Description: STAND-IN for NVIDIA's $pkg (homelab.gpu tests and demo lab only)"
    echo " Built by homelab.gpu lab/stand-ins/lab-apt.sh. It has no GPU support whatsoever; it only"
    echo " lets the provision scenario install, register and run the nvidia runtime."
  } >"$dir/DEBIAN/control"
  echo "STAND-IN package built by homelab.gpu lab/stand-ins/lab-apt.sh" \
    >"$dir/usr/share/doc/$pkg/README.stand-in"
  if [ "${3:-}" = runtime ]; then
    install -d "$dir/usr/bin"
    cat >"$dir/usr/bin/nvidia-container-runtime" <<'RUNTIME'
#!/bin/sh
# STAND-IN for nvidia-container-runtime (homelab.gpu molecule test): no GPU hooks, hands every
# call over to runc unchanged.
exec runc "$@"
RUNTIME
    chmod 0755 "$dir/usr/bin/nvidia-container-runtime"
  fi
  dpkg-deb --root-owner-group --build "$dir" "$root/nvidia/$arch/${pkg}_${version}_${arch}.deb" >/dev/null
}
standin libnvidia-container1 ""
standin libnvidia-container-tools "libnvidia-container1 (= $version)"
standin nvidia-container-toolkit-base "" runtime
standin nvidia-container-toolkit "nvidia-container-toolkit-base (= $version), libnvidia-container-tools (>= $version)"
cd "$root/nvidia/$arch"
apt-ftparchive packages . >Packages
apt-ftparchive -o APT::FTPArchive::Release::Origin=homelab-gpu-lab \
  -o APT::FTPArchive::Release::Label=nvidia-container-toolkit-stand-in release . >"$root/build/Release"
mv "$root/build/Release" Release
sign .
echo "lab apt repositories ready under $root"
