# services.osmoda: one osmoda node per host, as a hardened systemd unit.
# The hardening is the same as packaging/osmoda.service's, which says why
# each line is there in more words; the comments here keep the reasons.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.osmoda;
  toml = pkgs.formats.toml { };

  # An agent as `[[agents]]` wants it: its name inside, and no nulls
  # (TOML has none; an option left null is a key left out).
  renderAgent = name: agent:
    lib.filterAttrs (_: v: v != null) (agent // { inherit name; });

  configFile = toml.generate "osmoda-config.toml" (lib.recursiveUpdate cfg.settings ({
    listen = cfg.listen;
    bootstrap = cfg.bootstrap;
    mdns = cfg.mdns;
    labels = cfg.labels;
  } // lib.optionalAttrs (cfg.agents != { }) {
    agents = lib.mapAttrsToList renderAgent cfg.agents;
  }));

  # Ports to open, read from the listen multiaddrs.
  portsOf = regex: lib.unique (map (a: lib.toInt (lib.head (builtins.match regex a)))
    (lib.filter (a: builtins.match regex a != null) cfg.listen));
  tcpPorts = portsOf ".*/tcp/([0-9]+).*";
  udpPorts = portsOf ".*/udp/([0-9]+)/quic.*";

  osmoda = "${cfg.package}/bin/osmoda";

  # Before every start: the configuration in place, and, while the folder
  # holds no membership yet, a join with the token (so a new host joins on
  # its first boot; an empty folder would otherwise found a fleet of its
  # own). The token comes as a systemd credential, so a file readable by
  # root only (agenix, sops-nix) works.
  prestart = pkgs.writeShellScript "osmoda-prestart" ''
    set -eu
    install -m 0600 ${configFile} ${cfg.dataDir}/config.toml
    if [ ! -e ${cfg.dataDir}/identity.key ] || [ ! -e ${cfg.dataDir}/membership.cert ]; then
      ${lib.optionalString (cfg.joinTokenFile != null) ''
        ${osmoda} --data ${cfg.dataDir} join - < "$CREDENTIALS_DIRECTORY/join-token"
      ''}
      true
    fi
  '';

  agentModule = { ... }: {
    options = {
      command = lib.mkOption {
        type = lib.types.str;
        description = "The program; a bare name is looked up in PATH.";
      };
      args = lib.mkOption { type = lib.types.listOf lib.types.str; default = [ ]; };
      env = lib.mkOption { type = lib.types.attrsOf lib.types.str; default = { }; };
      ring = lib.mkOption {
        type = lib.types.enum [ 1 2 ];
        default = 2;
        description = "2: own workspace, knowledge reads; 1: may ask for more, with approval.";
      };
      restart = lib.mkOption {
        type = lib.types.enum [ "always" "on-failure" "never" ];
        default = "on-failure";
      };
      memory = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "256M";
      };
      cpu = lib.mkOption {
        type = lib.types.nullOr lib.types.ints.positive;
        default = null;
        description = "Percent of one core.";
      };
      processes = lib.mkOption { type = lib.types.nullOr lib.types.ints.positive; default = null; };
      allow = lib.mkOption {
        type = lib.types.listOf lib.types.str;
        default = [ ];
        example = [ "api.example.org:443" ];
        description = "Destinations the egress proxy lets the agent reach.";
      };
      ro = lib.mkOption { type = lib.types.listOf lib.types.str; default = [ ]; };
      rw = lib.mkOption { type = lib.types.listOf lib.types.str; default = [ ]; };
      unconfined = lib.mkOption { type = lib.types.bool; default = false; };
    };
  };
in
{
  options.services.osmoda = {
    enable = lib.mkEnableOption "the osmoda mesh node";

    package = lib.mkOption {
      type = lib.types.package;
      description = "The osmoda package (the flake's module sets its own).";
    };

    dataDir = lib.mkOption {
      type = lib.types.str;
      default = "/var/lib/osmoda";
      description = "The node's data folder: keys, membership, store, sockets.";
    };

    listen = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ "/ip4/0.0.0.0/tcp/7410" "/ip4/0.0.0.0/udp/7410/quic-v1" ];
      description = "Multiaddrs to listen on.";
    };

    bootstrap = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "/ip4/198.51.100.4/tcp/7410" ];
      description = "Members to dial at start.";
    };

    mdns = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "Find members on the local network.";
    };

    labels = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = { };
      example = { site = "plant-3"; rack = "r7"; };
      description = "Labels shown by `osmoda status` (keys: a-z 0-9 - _ . /).";
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open the TCP and UDP (QUIC) ports of the listen addresses.";
    };

    settings = lib.mkOption {
      type = toml.type;
      default = { };
      example = { max_connections = 256; certificate_lifetime_days = 14; };
      description = "Further config.toml keys (README, Configuration); the options above win.";
    };

    joinTokenFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      example = "/run/agenix/osmoda-token";
      description = ''
        A file holding a join token from `osmoda fleet invite`. While the
        data folder has no membership, the unit joins with it before the
        node starts. Give a path outside the Nix store (agenix, sops-nix).
      '';
    };

    agents = lib.mkOption {
      type = lib.types.attrsOf (lib.types.submodule agentModule);
      default = { };
      example = { indexer = { command = "python3"; args = [ "-m" "indexer" ]; memory = "256M"; }; };
      description = ''
        Agents rendered as `[[agents]]`: at every start the node adds the
        missing ones and updates changed ones; an agent dropped here is
        left as it is (remove it with `osmoda agent rm`).
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];
    # So that an operator's `osmoda status` talks to this node.
    environment.variables.OSMODA_DATA = cfg.dataDir;

    networking.firewall = lib.mkIf cfg.openFirewall {
      allowedTCPPorts = tcpPorts;
      allowedUDPPorts = udpPorts;
    };

    # 0700: the folder holds the identity key and the vault.
    systemd.tmpfiles.rules = [ "d ${cfg.dataDir} 0700 root root - -" ];

    systemd.services.osmoda = {
      description = "osmoda mesh node";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      # Agents' commands are looked up in the system's PATH.
      path = [ "/run/current-system/sw" ];
      serviceConfig = {
        ExecStartPre = prestart;
        ExecStart = "${osmoda} --data ${cfg.dataDir} run";
        LoadCredential = lib.optional (cfg.joinTokenFile != null) "join-token:${cfg.joinTokenFile}";
        UMask = "0077";
        Restart = "on-failure";
        RestartSec = "5s";
        # SIGTERM to the node only: it stops its agents itself.
        KillMode = "mixed";
        TimeoutStopSec = "60s";
        LimitNOFILE = 65536;

        # Root, because agents run under uids of their own.
        User = "root";
        # Namespaces and mounts, setresuid/setgroups, loopback in agents'
        # network namespaces, workspaces given to agents, their files read
        # and removed, signals to their processes.
        CapabilityBoundingSet = [
          "CAP_SYS_ADMIN" "CAP_NET_ADMIN" "CAP_SETUID" "CAP_SETGID"
          "CAP_CHOWN" "CAP_FOWNER" "CAP_DAC_OVERRIDE" "CAP_KILL"
        ];
        NoNewPrivileges = true;
        # Read-only system; the data folder writable. An agent's --rw path
        # elsewhere needs its own ReadWritePaths entry.
        ProtectSystem = "strict";
        ReadWritePaths = [ cfg.dataDir ];
        ProtectHome = true;
        PrivateTmp = true;
        # Agents' mounts stay in the unit's namespace.
        PrivateMounts = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectClock = true;
        ProtectHostname = true;
        # Off: the node makes agents' cgroups under /sys/fs/cgroup.
        ProtectControlGroups = false;
        # cgroup v2: the unit's subtree is the node's to manage.
        Delegate = true;
        # ProtectProc stays default: the node reads /proc to find the
        # processes left under an agent's uid.
        RestrictNamespaces = [ "mnt" "net" ];
        # Netlink: interface addresses for listening and the egress proxy.
        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        # MemoryDenyWriteExecute stays off: agents inherit it, and JIT
        # runtimes need writable code pages.
        RemoveIPC = true;
        SystemCallArchitectures = "native";
        # Mounts for agents' namespaces; seccomp and Landlock for agents
        # (listed outside @system-service by systemd).
        SystemCallFilter = [
          "@system-service @mount seccomp landlock_create_ruleset landlock_add_rule landlock_restrict_self"
          "~@clock @cpu-emulation @debug @module @obsolete @raw-io @reboot @swap"
        ];
        SystemCallErrorNumber = "EPERM";
      };
    };
  };
}
