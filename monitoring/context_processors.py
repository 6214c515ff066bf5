from django.conf import settings


def site(request):
    """Name and research-use disclaimer for every template."""
    return {
        "SITE_NAME": settings.SITE_NAME,
        "RESEARCH_DISCLAIMER": settings.RESEARCH_DISCLAIMER,
    }
