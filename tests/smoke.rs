mod support;
use support::*;

#[tokio::test]
async fn proxies_a_get() {
    let b = Backend::start("mono").await;
    let f = Figway::start(&config(&format!(
        "[upstreams.m]\ntargets=[\"{}\"]\n[[routes]]\nprefix=\"/\"\nto=\"m\"\n",
        b.url()
    )))
    .await;
    let a = get(f.addr, "/x", &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "mono");
}
