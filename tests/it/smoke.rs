use crate::harness::*;

#[tokio::test]
async fn miss_then_hit() {
    let origin = Origin::fixed("hello", "max-age=60").await;
    let node = Node::start(&site_config(&origin.url(), "")).await;
    let first = get(&node, "/a").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "hello");
    println!("{:?}", first.headers);
    let second = get(&node, "/a").await;
    println!("{:?}", second.headers);
    assert_eq!(second.text(), "hello");
    assert!(
        second.cache_status().contains("hit"),
        "{}",
        second.cache_status()
    );
    assert_eq!(origin.count("/a"), 1);
    node.stop().await;
}
