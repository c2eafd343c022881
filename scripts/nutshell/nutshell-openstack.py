#!/usr/bin/python3
"""conpaas-nutshell-openstack: the OpenStack API part of the Nutshell's first
boot, in one process with one token (openstacksdk). A shell loop of
`openstack` commands starts Python and reloads every client plugin for each
call, which on a small VM costs minutes.

  conpaas-nutshell-openstack identity    projects, service users, catalogue
  conpaas-nutshell-openstack wait-compute
  conpaas-nutshell-openstack wait-agents Neutron's DHCP and Linux bridge agents
  conpaas-nutshell-openstack wait-dhcp   Neutron's DHCP server on hostonly
  conpaas-nutshell-openstack resources   network, flavor, rules, key, image and
                                         the director's catalogue; writes the
                                         network's ID; prints director.cfg's
                                         image line
  conpaas-nutshell-openstack image       the image and the catalogue alone

Every step looks before it creates, so a failed first boot can run again.
Environment: NUTSHELL_IP, NUTSHELL_PASSWORD (/etc/conpaas-nutshell/env),
NUTSHELL_IMAGE (the services image to register, default
/var/lib/conpaas-nutshell/conpaas-lxc.img, with its catalogue entry in
NUTSHELL_IMAGE.catalogue.json), NUTSHELL_CATALOGUE (the director's
catalogue to write, default /etc/cpsdirector/catalogue.json),
NUTSHELL_PUBKEY (the director's SSH public key file),
NUTSHELL_NETWORK_ID_FILE (where resources writes the ID of network hostonly,
default /etc/conpaas-nutshell/hostonly-network-id: Nova names the bridge it
plugs instances into after it, and conpaas-nutshell-bridge reads it),
NUTSHELL_TIMEOUT (seconds each wait-* step waits, default 600).
"""
import json
import os
import sys
import time

import openstack

IP = os.environ.get("NUTSHELL_IP", "192.168.56.10")
PW = os.environ.get("NUTSHELL_PASSWORD", "conpaas")
# NUTSHELL_AUTH_URL: another Keystone (the scripts' own test uses one).
AUTH_URL = os.environ.get("NUTSHELL_AUTH_URL", "http://%s:5000/v3" % IP)
# Under TCG a DHCP server took 3.5 minutes from scheduling to ACTIVE.
TIMEOUT = int(os.environ.get("NUTSHELL_TIMEOUT", "600"))

# name, type, port, path: what conpaas-nutshell-setup starts.
SERVICES = [
    ("glance", "image", 9292, ""),
    ("placement", "placement", 8778, ""),
    ("nova", "compute", 8774, "/v2.1"),
    ("neutron", "network", 9696, ""),
]

# The ports every ConPaaS VM needs open, inbound TCP: the seeds' "Security
# Group" list, the same as clouds/compute.Ports (a test keeps them equal).
CONPAAS_PORTS = [443, 5555, 80, 8000, 8080, 9000, 3306, 4444, 4567, 4568,
                 32636, 32638, 32640, 22, 6121, 6122, 6123, 6130, 8081]


def say(msg):
    # stderr: stdout carries the result (the image id).
    sys.stderr.write("conpaas-nutshell-openstack: %s\n" % msg)


def write_file(path, text):
    """Writes text to path through a temporary file renamed at the end, so
    that a reader (the director, conpaas-nutshell-bridge) never sees half a
    file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def connect(project="admin", tries=90):
    """Connects as admin, waiting for Keystone (uwsgi starts slowly)."""
    last = None
    for _ in range(tries):
        try:
            conn = openstack.connect(
                auth_url=AUTH_URL, username="admin", password=PW,
                project_name=project, user_domain_name="Default",
                project_domain_name="Default", region_name="RegionOne",
                identity_api_version="3")
            conn.authorize()
            return conn
        except Exception as e:  # keystone not up yet
            last = e
            time.sleep(2)
    raise SystemExit("Keystone at %s did not answer: %s" % (AUTH_URL, last))


def identity(conn):
    for name in ("service", "demo"):
        if not conn.get_project(name, domain_id="default"):
            conn.create_project(name, domain_id="default", description="ConPaaS in a Nutshell")
            say("project " + name)
    service = conn.get_project("service", domain_id="default")
    for name, stype, port, path in SERVICES:
        user = conn.get_user(name, domain_id="default")
        if not user:
            user = conn.create_user(name, password=PW, domain_id="default")
            say("user " + name)
        conn.grant_role("admin", user=user.id, project=service.id)
        if conn.get_service(name):
            continue
        svc = conn.create_service(name, service_type=stype)
        url = "http://%s:%d%s" % (IP, port, path)
        conn.create_endpoint(svc.id, public_url=url, internal_url=url, admin_url=url, region="RegionOne")
        say("service %s at %s" % (name, url))
    # The director works in project demo as admin.
    demo = conn.get_project("demo", domain_id="default")
    conn.grant_role("admin", user=conn.get_user("admin", domain_id="default").id, project=demo.id)


def wait_compute(conn, tries=150):
    for _ in range(tries):
        try:
            if any(s.binary == "nova-compute" and s.state == "up" for s in conn.compute.services()):
                return
        except Exception:  # nova-api still starting
            pass
        time.sleep(2)
    raise SystemExit("nova-compute did not report up; see journalctl -u nova-compute")


def wait_agents(conn, timeout=TIMEOUT):
    """Waits until Neutron counts the DHCP and Linux bridge agents alive.
    A network made before that may never get a DHCP server: Neutron's
    scheduler keeps only DHCP agents on hosts whose bridge agent maps the
    network's physical network, and tries again only on a later port or
    subnet event. In run 6 of TestNutshellService the subnet came 0.3 s
    before the bridge agent's first report ("Unable to schedule network
    ...: no agents available"), and the first boot lost 8 minutes."""
    want = {"DHCP agent", "Linux bridge agent"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            alive = {a.agent_type for a in conn.network.agents() if a.is_alive and a.is_admin_state_up}
            if want <= alive:
                return
        except Exception:  # neutron-api still starting
            pass
        time.sleep(2)
    raise SystemExit("Neutron's DHCP and Linux bridge agents did not report alive within %d s; "
                     "see /var/log/neutron/neutron-dhcp-agent.log and neutron-linuxbridge-agent.log" % timeout)


def wait_dhcp(conn, timeout=TIMEOUT):
    """Waits for Neutron's DHCP server on hostonly (the DHCP agent's port,
    ACTIVE): without it instances get no address and no route to the
    metadata service. A network no DHCP agent hosts (made before the
    agents were alive: see wait_agents) is given to a live one, which
    Neutron then tells to start its dnsmasq: no restart of the agent."""
    net = conn.get_network("hostonly")
    if not net:
        raise SystemExit("there is no network hostonly; run conpaas-nutshell-openstack resources first")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if any(p.status == "ACTIVE" for p in conn.network.ports(network_id=net.id, device_owner="network:dhcp")):
                return
            if not list(conn.network.network_hosting_dhcp_agents(net)):
                for agent in conn.network.agents(agent_type="DHCP agent"):
                    if agent.is_alive and agent.is_admin_state_up:
                        conn.network.add_dhcp_agent_to_network(agent, net)
                        say("network hostonly had no DHCP agent: gave it to the one on %s" % agent.host)
                        break
        except Exception:  # neutron-api busy, or another scheduling won
            pass
        time.sleep(2)
    raise SystemExit("no DHCP server on network hostonly within %d s; see /var/log/neutron/neutron-dhcp-agent.log" % timeout)


def resources(conn):
    net = conn.get_network("hostonly")
    if not net:
        wait_agents(conn)
        # Instances live on VirtualBox's host-only network itself, below
        # the range of VirtualBox's own DHCP server (.100, leases .101-.254).
        net = conn.create_network("hostonly", shared=True,
                                  provider={"physical_network": "hostonly", "network_type": "flat"})
        conn.create_subnet(net.id, subnet_name="hostonly", cidr="192.168.56.0/24",
                           gateway_ip="192.168.56.1", enable_dhcp=True,
                           allocation_pools=[{"start": "192.168.56.20", "end": "192.168.56.99"}],
                           dns_nameservers=["192.168.56.1"])
        say("network hostonly")
    write_file(os.environ.get("NUTSHELL_NETWORK_ID_FILE", "/etc/conpaas-nutshell/hostonly-network-id"), net.id + "\n")
    if not conn.get_flavor("m1.small"):
        conn.create_flavor("m1.small", ram=512, vcpus=1, disk=4)
        say("flavor m1.small")

    demo = conn.connect_as_project("demo")
    # As admin, a listing shows every project's "default" group: ask for
    # demo's own (Neutron makes it when demo first lists its groups).
    demo.list_security_groups()
    sg = demo.get_security_group("default", filters={"project_id": demo.current_project_id})
    have = {(r.get("protocol"), r.get("port_range_min")) for r in sg.get("security_group_rules", [])
            if r.get("direction") == "ingress"}
    for port in CONPAAS_PORTS:
        if ("tcp", port) not in have:
            demo.create_security_group_rule(sg.id, port_range_min=port, port_range_max=port,
                                            protocol="tcp", direction="ingress")
    if ("icmp", None) not in have:
        demo.create_security_group_rule(sg.id, protocol="icmp", direction="ingress")
    say("security group default of demo opens the ConPaaS ports")

    pub = os.environ.get("NUTSHELL_PUBKEY", "/root/.ssh/id_ed25519.pub")
    if not demo.get_keypair("conpaas"):
        with open(pub) as f:
            demo.create_keypair("conpaas", public_key=f.read().strip())
        say("keypair conpaas")

    print(services_image(conn))


def services_image(conn):
    """Registers the ConPaaS services image the appliance carries (the LXC
    image `make nutshell` copies in, with its catalogue entry beside it) in
    Glance, as Nova's libvirt LXC driver takes it: raw (a loop device, no
    qemu-nbd), bare, hypervisor_type=lxc. Then writes the director's
    catalogue: that entry, registered in this cloud. Returns director.cfg's
    image line."""
    img = os.environ.get("NUTSHELL_IMAGE", "/var/lib/conpaas-nutshell/conpaas-lxc.img")
    cat_path = os.environ.get("NUTSHELL_CATALOGUE", "/etc/cpsdirector/catalogue.json")
    entry_path = img + ".catalogue.json"
    if not os.path.exists(img) or not os.path.exists(entry_path):
        say("no services image at %s (with %s): the director has none to start" % (img, entry_path))
        return "IMAGE_ID = conpaas"
    with open(entry_path) as f:
        art = json.load(f)["artifacts"][0]
    image = conn.get_image(art["name"])
    if not image:
        say("registering %s (%s %s, %s) in Glance" % (img, art["name"], art["version"], art["kind"]))
        meta = {"conpaas_version": art["version"]}
        if art["kind"] == "lxc":
            # Nova's scheduler (ImagePropertiesFilter) starts it on LXC
            # hosts only, as `cpsimage register` does.
            meta["hypervisor_type"] = "lxc"
        # md5 and sha256 from the entry: openstacksdk would otherwise read
        # the whole file once more to compute them.
        image = conn.create_image(art["name"], filename=img, md5=art["md5"], sha256=art["sha256"],
                                  disk_format="raw", container_format="bare", visibility="public",
                                  meta=meta, wait=True)
    # Glance's checksum is the MD5 of what it stored: the upload is the
    # image the build made, or the director must not use it.
    image = conn.get_image(image.id)
    if image.checksum != art["md5"]:
        raise SystemExit("Glance stored %s with MD5 %s, but the image's catalogue entry says %s" % (
            art["name"], image.checksum, art["md5"]))
    say("Glance image %s (%s) is %s, MD5 %s" % (art["name"], image.id, image.status, image.checksum))

    # The director's catalogue (what `cpsimage register -target glance`
    # records): the entry, registered in this cloud and region.
    art["file"] = img
    art["registrations"] = [{"cloud": "openstack", "target": "glance", "region": "RegionOne",
                             "image_id": image.id, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]
    write_file(cat_path, json.dumps({"schema_version": 1, "artifacts": [art]}, indent=2) + "\n")
    say("catalogue %s: %s %s is Glance image %s" % (cat_path, art["name"], art["version"], image.id))
    return "IMAGE = catalogue:%s" % art["name"]


def main(argv):
    steps = {"identity": identity, "wait-compute": wait_compute, "wait-agents": wait_agents, "wait-dhcp": wait_dhcp, "resources": resources,
             "image": lambda conn: print(services_image(conn))}
    if len(argv) != 2 or argv[1] not in steps:
        sys.stderr.write("usage: conpaas-nutshell-openstack identity|wait-compute|wait-agents|wait-dhcp|resources|image\n")
        return 2
    steps[argv[1]](connect())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
