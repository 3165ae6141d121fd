# A three-machine fleet in NixOS VMs: a founds the fleet, b and c join with
# tokens given to the module as files, a knowledge entry written on a
# reaches c, and a fleet lockdown from a stops the agents on b and c.
#
# It needs Nix with KVM: `nix build .#checks.x86_64-linux.fleet`. It cannot
# run where this repository's CI runs (no Nix store, no KVM); CI only
# parses this file (tests/packaging.rs).
{ pkgs, module }:

let
  common = { lib, ... }: {
    imports = [ module ];
    environment.systemPackages = [ pkgs.jq ];
    services.osmoda = {
      enable = true;
      openFirewall = true;
      # The VMs share one virtual LAN; mDNS would find the fleet too, but
      # the bootstrap address makes the test not depend on it.
      bootstrap = [ "/dns4/a/tcp/7410" ];
      labels = { site = "vm-lab"; };
      agents.sleeper = {
        command = "sleep";
        args = [ "3600" ];
        restart = "always";
        memory = "64M";
      };
    };
  };
  joiner = { lib, ... }: {
    imports = [ common ];
    services.osmoda.joinTokenFile = "/run/osmoda-token";
    # Started by the test once its token is there: without one the unit
    # would fail anyway, never found a fleet of its own.
    systemd.services.osmoda.wantedBy = lib.mkForce [ ];
  };
in
pkgs.testers.runNixOSTest {
  name = "osmoda-fleet";
  nodes = {
    a = common;
    b = joiner;
    c = joiner;
  };
  testScript = ''
    start_all()
    a.wait_for_unit("osmoda.service")
    a.wait_until_succeeds("osmoda status")
    a.succeed("osmoda status | grep -q 'label     site = vm-lab'")

    for node in (b, c):
        name = node.name
        token = a.succeed(
            f"osmoda fleet invite --name {name} --bootstrap /dns4/a/tcp/7410"
        ).strip()
        node.wait_for_unit("multi-user.target")
        node.succeed(f"(umask 077; echo '{token}' > /run/osmoda-token)")
        node.succeed("systemctl start osmoda.service")
        node.wait_until_succeeds("osmoda status")

    a.wait_until_succeeds("osmoda --json peers | jq -e 'length == 2'", timeout=120)
    for node in (a, b, c):
        node.wait_until_succeeds(
            "osmoda --json agent show sleeper | jq -e '.state.state == \"running\"'", timeout=60
        )

    # Replication: written on a, read on c.
    a.succeed("osmoda knowledge put --title 'Pump 3' --body 'Replace the seal every 500 h'")
    c.wait_until_succeeds("osmoda knowledge list | grep -q 'Pump 3'", timeout=120)

    # A second start joins no more: the folder is a member now.
    b.succeed("systemctl restart osmoda.service")
    b.wait_until_succeeds("osmoda status")

    # Fleet lockdown from the founding admin reaches every member.
    a.succeed("osmoda lockdown --fleet")
    for node in (b, c):
        node.wait_until_succeeds("osmoda --json status | jq -e '.agents.lockdown'", timeout=60)
        node.wait_until_succeeds(
            "osmoda --json agent show sleeper | jq -e '.state.state != \"running\"'", timeout=60
        )
    a.succeed("osmoda unlock --fleet")
    c.wait_until_succeeds("osmoda --json status | jq -e '.agents.lockdown | not'", timeout=60)
  '';
}
