"""The studio in Debian's Chromium against a real gateway over the in-process mesh: every view does its work
through the REST dialects, and what it shows is what the API answered."""

from __future__ import annotations

import re
import uuid

import httpx
from playwright.async_api import expect

from tests.images import disc_rgba, png_bytes
from tests.mesh import MODELS_DIR
from tests.polling import eventually
from tests.studio.conftest import PHONE

ASTRONAUT = MODELS_DIR / "testdata" / "astronaut.png"
LONG = 180_000  # ms: a bound on hanging for model work on a shared CPU, not a performance figure


async def _generate(base: str, prompt: str, **settings) -> dict:
    """Queue a CyberImage generation through the API and wait for it to finish."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        job = (await http.post("/api/generate", json={"model_id": "flux-1", "prompt": prompt,
                                                       "settings": settings})).json()

        async def status():
            return (await http.get(f"/api/status/{job['job_id']}")).json()

        return await eventually(status, lambda s: s["status"] in ("completed", "failed"), timeout=LONG / 1000)


async def test_generate_shows_live_steps_then_stored_images(page, live_gateway, shot):
    token = uuid.uuid4().hex[:10]
    await page.goto(f"{live_gateway}/studio/")
    await expect(page.get_by_label("Model")).to_contain_text("tiny-sd")
    await page.get_by_label("Prompt", exact=True).fill(f"a lighthouse at dusk {token}")
    await page.get_by_label("Negative prompt").fill("blurry")
    await page.get_by_label("Width (px)").fill("512")
    await page.get_by_label("Height (px)").fill("512")
    await page.get_by_label("Steps", exact=True).fill("20")
    await page.get_by_label("Guidance").fill("6")
    await page.get_by_label("Seed").fill("7")
    await page.get_by_role("button", name="Generate", exact=True).click()

    images = page.get_by_test_id("generated-image")
    await expect(images).to_have_count(1, timeout=LONG)
    steps = await page.get_by_test_id("generate-steps").locator("li").all_inner_texts()
    assert steps, "no denoising step was shown while the job ran"
    numbers = [int(re.fullmatch(r"Step (\d+) of 20", text).group(1)) for text in steps]
    assert numbers == sorted(set(numbers)) and 1 <= numbers[0] and numbers[-1] <= 20
    assert await page.locator("#generate-progress").get_attribute("value") == "100"
    size = await images.locator("img").evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert size == [512, 512]
    download = images.get_by_role("link", name="Download PNG")
    assert (await download.get_attribute("href")).startswith("blob:")
    await shot(page, "generate")

    # Stored: the gallery finds it, with the settings the studio sent.
    async with httpx.AsyncClient(base_url=live_gateway) as http:
        gallery = (await http.get("/api/gallery", params={"search": token})).json()
    assert gallery["total"] == 1
    assert gallery["images"][0]["settings"] == {"num_inference_steps": 20, "guidance_scale": 6.0, "width": 512,
                                                "height": 512}


async def test_shotgun_on_a_photo_shows_every_cutout_and_logs_the_pick(page, live_gateway, shot):
    category = f"studio-{uuid.uuid4().hex[:8]}"
    await page.goto(f"{live_gateway}/studio/#shotgun")
    await page.locator("#shotgun-file").set_input_files(str(ASTRONAUT))
    await page.get_by_role("button", name="Remove background with every model").click()
    await expect(page.get_by_test_id("shotgun-summary")).to_contain_text("models succeeded", timeout=LONG)

    succeeded = page.locator('[data-testid="cutout"][data-status="success"]')
    assert await succeeded.count() >= 2
    for index in range(await succeeded.count()):
        card = succeeded.nth(index)
        assert await card.locator("img").evaluate("img => img.naturalWidth") == 512
        await expect(card.locator("figcaption")).to_contain_text(re.compile(r"\d+ ms · \$\d"))
        assert (await card.get_by_role("link", name="Download PNG").get_attribute("href")).startswith(
            "data:image/png;base64,")
    picked = await succeeded.nth(1).get_attribute("data-model")
    await succeeded.nth(1).get_by_role("radio").check()
    await page.get_by_label("Category (optional)").fill(category)
    await page.get_by_role("button", name="Log my pick").click()
    await expect(page.get_by_test_id("auto-model")).to_have_text(picked)
    await shot(page, "shotgun")

    async with httpx.AsyncClient(base_url=live_gateway) as http:
        ranking = (await http.get("/selection-ranking", params={"image_category": category})).json()
    assert ranking == {"image_category": category, "auto_model": picked,
                       "ranking": [{"model_id": picked, "selections": 1, "share": 1.0}]}


async def test_upscale_shows_before_and_after_with_the_api_sizes(page, live_gateway, shot, tmp_path):
    source = tmp_path / "disc.png"
    source.write_bytes(png_bytes(disc_rgba(48)))
    await page.goto(f"{live_gateway}/studio/#enhance")
    await page.locator("#enhance-file").set_input_files(str(source))
    await page.get_by_label("Factor").select_option("2")
    await page.get_by_role("button", name="Upscale").click()
    await expect(page.get_by_test_id("after-size")).to_contain_text("96 × 96", timeout=LONG)
    await expect(page.get_by_test_id("before-size")).to_have_text("Before: 48 × 48")
    after = page.get_by_test_id("before-after").get_by_role("img", name="After")
    assert await after.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [96, 96]
    await shot(page, "upscale")


async def test_gallery_pages_deletes_and_jobs_cancel(page, live_gateway, shot):
    token = uuid.uuid4().hex[:10]
    done = await _generate(live_gateway, f"gallery item {token}", num_images=3, width=64, height=64,
                           num_inference_steps=2)
    assert done["status"] == "completed", done
    page.on("dialog", lambda dialog: dialog.accept())
    await page.goto(f"{live_gateway}/studio/#gallery")
    await page.get_by_label("Search prompts").fill(token)
    await page.get_by_label("Per page").select_option("2")
    await page.get_by_role("button", name="Show").click()
    items = page.get_by_test_id("gallery-item")
    await expect(page.get_by_test_id("gallery-page")).to_have_text("Page 1 · 2 shown of 3")
    await expect(items).to_have_count(2)
    await page.get_by_role("button", name="Next page").click()
    await expect(page.get_by_test_id("gallery-page")).to_have_text("Page 2 · 1 shown of 3")
    await expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    last = await items.first.get_attribute("data-id")
    await items.first.get_by_role("button", name="Details").click()
    await expect(items.first.locator("dl")).to_contain_text(f"gallery item {token}")
    await shot(page, "gallery")
    await items.first.get_by_role("button", name="Delete").click()
    # Page 2 is empty after the delete: the studio goes back to page 1.
    await expect(page.get_by_test_id("gallery-page")).to_have_text("Page 1 · 2 shown of 2")
    async with httpx.AsyncClient(base_url=live_gateway, timeout=60) as http:
        left = (await http.get("/api/gallery", params={"search": token})).json()
        assert left["total"] == 2 and last not in [image["id"] for image in left["images"]]
        await expect(page.get_by_test_id("queue")).to_contain_text("Completed")

        # A long job is listed with its progress and cancelled from the table.
        job = (await http.post("/api/generate", json={"model_id": "flux-1", "prompt": f"long {token}", "settings": {
            "num_images": 8, "width": 512, "height": 512, "num_inference_steps": 50}})).json()
        await page.get_by_role("button", name="Refresh jobs").click()
        row = page.locator(f'[data-testid="job"][data-id="{job["job_id"]}"]')
        await row.get_by_role("button", name="Cancel").click()
        await expect(row).to_have_attribute("data-status", "cancelled", timeout=LONG)
        assert (await http.get(f"/v1/jobs/{job['job_id']}")).json()["status"] == "cancelled"
    await shot(page, "jobs")


async def test_a_failed_request_shows_the_api_message(page, live_gateway, shot):
    url = "http://127.0.0.1:9/nothing.png"
    async with httpx.AsyncClient(base_url=live_gateway, timeout=60) as http:
        reply = await http.post("/remove-background", json={"image_url": url, "include_models": ["all"]})
    assert reply.status_code == 400
    message = reply.json()["error"]["message"]
    await page.goto(f"{live_gateway}/studio/#shotgun")
    await page.get_by_label("…or an image URL").fill(url)
    await page.get_by_role("button", name="Remove background with every model").click()
    await expect(page.get_by_test_id("shotgun-error")).to_have_text(message)
    await expect(page.get_by_test_id("shotgun-results").locator("figure")).to_have_count(0)
    await shot(page, "error")


async def test_auth_asks_for_the_key_once_and_keeps_it(page, live_secured_gateway, shot):
    await page.goto(f"{live_secured_gateway}/studio/#gallery")
    dialog = page.get_by_role("dialog", name="API key")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_role("alert")).not_to_be_empty()
    await shot(page, "auth")
    await page.get_by_label("Your imagemesh API key").fill("key-alice")
    await page.get_by_role("button", name="Use this key").click()
    await expect(page.get_by_test_id("gallery-page")).to_contain_text("Page 1")
    await expect(page.get_by_test_id("gallery-error")).to_be_hidden()
    assert await page.evaluate("sessionStorage.getItem('imagemesh.apiKey')") == "key-alice"
    # Another view reuses the key without asking again.
    await page.get_by_role("tab", name="Workflows").click()
    await expect(page.get_by_test_id("workflow")).not_to_have_count(0)
    await expect(dialog).to_be_hidden()


async def test_phone_width_and_keyboard(browser, live_gateway, shot):
    context = await browser.new_context(viewport=PHONE)
    page = await context.new_page()
    try:
        await page.goto(f"{live_gateway}/studio/")
        await page.get_by_role("tab", name="Generate").focus()
        for name in ("Background removal", "Upscale & crops", "Workflows", "Gallery & jobs"):
            await page.keyboard.press("ArrowRight")
            tab = page.get_by_role("tab", name=name)
            await expect(tab).to_have_attribute("aria-selected", "true")
            await expect(tab).to_be_focused()
            await expect(page.get_by_role("tabpanel", name=name)).to_be_visible()
            await expect(page.get_by_role("tabpanel")).to_have_count(1)
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{name}: the page is {width}px wide at {PHONE['width']}px"
        await page.keyboard.press("Home")
        await expect(page.get_by_role("tab", name="Generate")).to_be_focused()
        # Every form control in the studio has a label.
        unlabelled = await page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
            .filter(c => !c.closest('[hidden]') && !c.labels.length && !c.getAttribute('aria-label'))
            .map(c => c.id || c.name || c.outerHTML)""")
        assert unlabelled == []
        await shot(page, "phone")
    finally:
        await context.close()


async def test_relight_and_social_crop_with_its_safe_zone(page, live_gateway, shot, tmp_path):
    source = tmp_path / "photo.png"
    source.write_bytes(ASTRONAUT.read_bytes())
    await page.goto(f"{live_gateway}/studio/#enhance")
    await page.locator("#enhance-file").set_input_files(str(source))
    await page.get_by_role("button", name="Relight").click()
    await expect(page.get_by_test_id("before-size")).to_have_text("Before: 512 × 512", timeout=LONG)
    await expect(page.get_by_test_id("after-size")).to_contain_text("512 × 512")

    await page.get_by_label("Platform").fill("instagram")
    await page.get_by_role("button", name="Show formats").click()
    async with httpx.AsyncClient(base_url=live_gateway) as http:
        formats = (await http.get("/api/image-studio/social/platforms/instagram/formats")).json()["formats"]
    options = page.get_by_label("Format").locator("option")
    await expect(options).to_have_count(len(formats))
    chosen = formats[0]
    await page.get_by_role("button", name="Crop for this format").click()
    after = page.get_by_test_id("after-size")
    await expect(after).to_have_text(f"instagram {chosen['name']}: {chosen['width']} × {chosen['height']}",
                                     timeout=LONG)
    crop = page.get_by_test_id("social-crop")
    assert await crop.locator("img").evaluate("img => [img.naturalWidth, img.naturalHeight]") == [
        chosen["width"], chosen["height"]]
    # The overlay sits where the API's safe-zone margins put it.
    frame = await crop.bounding_box()
    zone = await page.get_by_test_id("safe-zone").bounding_box()
    margins = chosen["safe_zone"]
    assert abs(zone["x"] - frame["x"] - margins["left"] * frame["width"]) <= 1
    assert abs(zone["y"] - frame["y"] - margins["top"] * frame["height"]) <= 1
    await shot(page, "social")


async def test_workflow_runs_with_live_steps(page, live_gateway, shot):
    await page.goto(f"{live_gateway}/studio/#workflows")
    async with httpx.AsyncClient(base_url=live_gateway) as http:
        listed = (await http.get("/v1/workflows")).json()["workflows"]
    cards = page.get_by_test_id("workflow")
    await expect(cards).to_have_count(len(listed))
    shot_info = next(w for w in listed if w["id"] == "product_shot")
    await expect(cards.filter(has_text=shot_info["name"])).to_contain_text(shot_info["estimated_cost"])
    await page.get_by_label("Workflow", exact=True).select_option("product_shot")
    await page.get_by_label("Prompt (for workflows that generate)").fill("a red teapot")
    await page.get_by_label("Parameters (JSON, optional)").fill('{"width": 64, "height": 64, "steps": 2}')
    await page.get_by_role("button", name="Run workflow").click()
    await expect(page.get_by_test_id("workflow-result")).to_be_visible(timeout=LONG)
    steps = page.get_by_test_id("workflow-steps").locator("li")
    await expect(steps).to_have_count(shot_info["steps_count"])
    for index in range(shot_info["steps_count"]):
        await expect(steps.nth(index)).to_have_attribute("data-status", "completed")
    # product_shot upscales 2x: the API's result is 128 px wide, and the page shows that image.
    assert await page.get_by_test_id("workflow-result").locator("img").evaluate("img => img.naturalWidth") == 128
    await shot(page, "workflow")
