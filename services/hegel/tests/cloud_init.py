"""Drive cloud-init's Ec2 datasource against a metadata URL; print what cloud-init concluded.

Run with Debian's python inside a network namespace (never the `cloud-init` CLI on the host: its
modules would reconfigure the machine). Usage: cloud_init.py URL CLOUD_NAME MAX_WAIT TMPDIR.
CLOUD_NAME "aws" makes cloud-init use IMDSv2 session tokens; "" leaves detection alone.
"""
import json
import os
import sys

from cloudinit import distros, helpers
from cloudinit.sources import DataSourceEc2

url, cloud, max_wait, tmp = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
paths = helpers.Paths({"cloud_dir": tmp, "run_dir": os.path.join(tmp, "run")})
cfg = {
    "datasource": {
        "Ec2": {
            "strict_id": False,
            "metadata_urls": [url],
            "timeout": 2,
            "max_wait": max_wait,
        }
    }
}
distro = distros.fetch("debian")("debian", {}, paths)
ds = DataSourceEc2.DataSourceEc2(cfg, distro, paths)
if cloud:
    ds._cloud_name = cloud
ok = bool(ds.get_data())
out = {"ok": ok}
if ok:
    ud = ds.get_userdata_raw()
    if isinstance(ud, bytes):
        ud = ud.decode()
    out.update(
        instance_id=ds.get_instance_id(),
        hostname=ds.get_hostname(fqdn=True).hostname,
        keys=sorted(ds.get_public_ssh_keys()),
        userdata=ud,
        api_version=ds._crawled_metadata.get("_metadata_api_version"),
        token_used=bool(ds._api_token),
    )
    # cloud-init's own record of the instance, as `cloud-init query` would read it.
    with open(paths.get_runpath("instance_data")) as f:
        idata = json.load(f)
    out["instance_data_v1"] = idata["v1"]
    out["instance_data_meta"] = idata["ds"].get("meta-data") or idata["ds"].get("meta_data")
print(json.dumps(out))
