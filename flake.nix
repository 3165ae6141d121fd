{
  description = "osmoda: a mesh-first fabric for autonomous agents on fleets of edge hosts";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAll (pkgs: {
        default = pkgs.rustPlatform.buildRustPackage {
          pname = "osmoda";
          version = (builtins.fromTOML (builtins.readFile ./Cargo.toml)).workspace.package.version;
          src = pkgs.lib.cleanSource ./.;
          cargoLock.lockFile = ./Cargo.lock;
          # The stripped, LTO build users install (Cargo.toml, profile.dist).
          buildType = "dist";
          cargoBuildFlags = [ "-p" "osmoda-node" "--bin" "osmoda" ];
          # The tests start networks of real nodes, namespaces and agents,
          # which the build sandbox does not allow; nixos/tests/fleet.nix
          # runs the package in VMs instead.
          doCheck = false;
          meta = {
            description = "osmoda mesh node";
            license = pkgs.lib.licenses.asl20;
            mainProgram = "osmoda";
            platforms = pkgs.lib.platforms.linux;
          };
        };
      });

      nixosModules.default = { pkgs, lib, ... }: {
        imports = [ ./nixos/module.nix ];
        services.osmoda.package =
          lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      };

      checks = forAll (pkgs: {
        fleet = import ./nixos/tests/fleet.nix {
          inherit pkgs;
          module = self.nixosModules.default;
        };
      });
    };
}
